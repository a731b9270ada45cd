package zlibpy

import (
	"bytes"
	"compress/zlib"
	"testing"
)

// BenchmarkCompress compares this encoder with compress/zlib at level 6 on
// 1 MiB of XML, reporting the compressed size as a fraction of the input.
func BenchmarkCompress(b *testing.B) {
	data := xmlish(randFor(b, 1), 1<<20)
	b.Run("zlibpy", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var n int
		for b.Loop() {
			n = len(Compress(data))
		}
		b.ReportMetric(float64(n)/float64(len(data)), "ratio")
	})
	b.Run("compress-zlib", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			w, _ := zlib.NewWriterLevel(&buf, 6)
			w.Write(data)
			w.Close()
		}
		b.ReportMetric(float64(buf.Len())/float64(len(data)), "ratio")
	})
}

// BenchmarkCompressSmall is the typical response: a few hundred bytes,
// where setting up the window and hash dominates.
func BenchmarkCompressSmall(b *testing.B) {
	data := xmlish(randFor(b, 2), 600)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Compress(data)
	}
}
