// Package zlibpy owns byte-exact reproduction of the zlib streams that
// CPython's zlib.compress writes, so that the base64(zlib(...)) text atpd
// stores in processes_response is the very text EOxServer's tracker would
// have stored for the same response.
//
// Any conforming deflate encoder produces a valid stream, but each encoder
// picks different matches, block boundaries and Huffman codes; Go's
// compress/flate is no exception. To be identical, this package follows the
// reference zlib decision for decision: the window, hash and lazy-match
// rules of deflate_slow with level 6's row of zlib's configuration table,
// blocks cut at 16383 symbols (memLevel 8), the stored/static/dynamic choice
// by computed cost, and zlib's Huffman tree construction including its
// tie-breaking and length-limit repair. It is written in pure Go from the
// algorithm as RFC 1950/1951 and zlib's own documentation describe it.
//
// Output equals CPython's zlib.compress(data) with its defaults: level 6
// (what Z_DEFAULT_COMPRESSION means), 15 window bits, memory level 8,
// default strategy. That is the only call the tracker makes, so other
// levels and strategies are not offered. The tests check this byte for byte
// against the local CPython (zlib 1.2.13); the algorithm has been stable
// across zlib 1.2.x and 1.3.x. CPython linked against a different deflate
// implementation (zlib-ng, as some distributions now ship in place of zlib,
// or the Intel/Cloudflare forks) writes other, equally valid, streams.
// Decoding needs no imitation; use compress/zlib.
package zlibpy

import (
	"hash/adler32"
	"sync"
)

// header is RFC 1950's CMF/FLG pair as zlib writes it at level 6: deflate
// with a 32K window, no dictionary, FLEVEL 2 (default), FCHECK filled in.
var header = [2]byte{0x78, 0x9c}

var pool = sync.Pool{New: func() any { return newCompressor() }}

// Compress returns what CPython's zlib.compress(data) returns.
func Compress(data []byte) []byte {
	c := pool.Get().(*compressor)
	defer pool.Put(c)
	c.reset(data)

	// Responses are mostly text that deflates to well under a quarter; the
	// rest grows by append rather than reserving the input's size up front.
	c.bw.out = make([]byte, 0, len(data)/4+64)
	c.bw.out = append(c.bw.out, header[:]...)
	c.deflateSlow()
	sum := adler32.Checksum(data)
	out := append(c.bw.out, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum))
	c.bw.out = nil
	c.in = nil
	return out
}
