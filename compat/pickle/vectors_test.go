package pickle

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// vector is one entry of testdata/vectors.json (written by testdata/gen.py).
type vector struct {
	Name       string `json:"name"`
	Source     string `json:"source"`
	Protocol   int    `json:"protocol"`
	Input      string `json:"input"`
	JSON       string `json:"json"`
	JSONIndent string `json:"json_indent"`
	Repr       string `json:"repr"`
}

var (
	vectorsOnce sync.Once
	vectorsData []vector
	vectorsErr  error
)

func loadVectors(t testing.TB) []vector {
	t.Helper()
	vectorsOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
		if err != nil {
			vectorsErr = err
			return
		}
		var f struct {
			Vectors []vector `json:"vectors"`
		}
		vectorsErr = json.Unmarshal(b, &f)
		vectorsData = f.Vectors
	})
	if vectorsErr != nil {
		t.Fatalf("load testdata/vectors.json: %v", vectorsErr)
	}
	if len(vectorsData) == 0 {
		t.Fatal("testdata/vectors.json has no vectors")
	}
	return vectorsData
}

// rawPickle undoes the envelope with the standard library only, so that
// the raw pickle does not depend on the code under test.
func rawPickle(t testing.TB, v vector) []byte {
	t.Helper()
	z, err := base64.StdEncoding.DecodeString(v.Input)
	if err != nil {
		t.Fatalf("%s: base64: %v", v.Name, err)
	}
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("%s: zlib: %v", v.Name, err)
	}
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: zlib: %v", v.Name, err)
	}
	return p
}

func mustJSON(t testing.TB, v any, opts ...JSONOption) string {
	t.Helper()
	b, err := ToJSON(v, opts...)
	if err != nil {
		t.Fatalf("ToJSON: %v", err)
	}
	return string(b)
}

// TestVectors decodes every Python-made and hand-made Python 2 vector
// through each entry point and compares the JSON with what Python itself
// produced for the loaded value.
func TestVectors(t *testing.T) {
	protocols := map[string]map[int]int{}
	for _, v := range loadVectors(t) {
		if protocols[v.Source] == nil {
			protocols[v.Source] = map[int]int{}
		}
		protocols[v.Source][v.Protocol]++
		t.Run(v.Name, func(t *testing.T) {
			raw := rawPickle(t, v)
			decoders := []struct {
				name string
				fn   func() (any, error)
			}{
				{"Decode", func() (any, error) { return Decode(v.Input) }},
				{"Unpickle", func() (any, error) { return Unpickle(raw) }},
				{"DecodeAuto/text", func() (any, error) { return DecodeAuto([]byte(v.Input + "\n")) }},
				{"DecodeAuto/raw", func() (any, error) { return DecodeAuto(raw) }},
			}
			for _, d := range decoders {
				got, err := d.fn()
				if err != nil {
					t.Fatalf("%s: %v (python loaded %s)", d.name, err, v.Repr)
				}
				if js := mustJSON(t, got); js != v.JSON {
					t.Fatalf("%s: JSON differs from Python's\n got: %s\nwant: %s", d.name, js, v.JSON)
				}
				if v.JSONIndent != "" {
					if js := mustJSON(t, got, JSONIndent("  ")); js != v.JSONIndent {
						t.Fatalf("%s: indented JSON differs from Python's\n got: %s\nwant: %s", d.name, js, v.JSONIndent)
					}
				}
			}
		})
	}
	// The vectors must cover what the issue asks for; a generator change
	// that drops a protocol should fail here, not pass silently.
	for p := 0; p <= 5; p++ {
		if protocols["python3"][p] == 0 {
			t.Errorf("no python3 vectors for protocol %d", p)
		}
	}
	for _, p := range []int{0, 2} {
		if protocols["python2-hand"][p] == 0 {
			t.Errorf("no hand-made python2 vectors for protocol %d", p)
		}
	}
}
