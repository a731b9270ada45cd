package djangodb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

func TestResponseCodecMatchesPython(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string // what Python's base64.b64encode(zlib.compress(data)) gives
	}{
		{"demo sum", []byte("15.0"), "eJwzNNUzAAAB8wDF"},            // ATP-SPEC.md section 6
		{"reference zombie sum", []byte("1.5"), "eJwz1DMFAAEnAJU="}, // reference-rows, instance "zombie"
		{"empty", nil, "eJwDAAAAAAE="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := djangodb.EncodeResponse(tc.data)
			if got != tc.want {
				t.Fatalf("EncodeResponse(%q) = %q, want %q", tc.data, got, tc.want)
			}
			back, err := djangodb.DecodeResponse(got)
			if err != nil || !bytes.Equal(back, tc.data) {
				t.Fatalf("DecodeResponse(%q) = %q, %v", got, back, err)
			}
		})
	}
}

// Every response and input text the reference tracker wrote (inputs are
// zlib'd pickles, made by the same zlib.compress call) must come out of a
// decode and re-encode unchanged.
func TestEncodeResponseReproducesReferenceRows(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdb.RepoRoot(t), "integration", "testdata", "reference-rows", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no reference rows found (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var rows struct {
				Responses []struct{ Response string } `json:"processes_response"`
				Inputs    []struct{ Input string }    `json:"processes_input"`
			}
			if err := json.Unmarshal(raw, &rows); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var texts []string
			for _, r := range rows.Responses {
				texts = append(texts, r.Response)
			}
			for _, r := range rows.Inputs {
				texts = append(texts, r.Input)
			}
			if len(texts) < 2 {
				t.Fatalf("%s holds %d zlib texts, want responses and inputs", file, len(texts))
			}
			for _, text := range texts {
				data, err := djangodb.DecodeResponse(text)
				if err != nil {
					t.Fatalf("DecodeResponse(%q): %v", text, err)
				}
				if got := djangodb.EncodeResponse(data); got != text {
					t.Errorf("EncodeResponse(%q) = %q, want the reference text %q", data, got, text)
				}
			}
		})
	}
}

// The tracker's own expression, run by Python on responses of the sizes and
// kinds handlers store, must give the text EncodeResponse gives.
func TestEncodeResponseMatchesTrackerExpression(t *testing.T) {
	py := testdb.Python(t)
	r := rand.New(rand.NewPCG(11, 12))
	var xml strings.Builder
	xml.WriteString(`<?xml version="1.0" encoding="UTF-8"?><wps:ExecuteResponse xmlns:wps="http://www.opengis.net/wps/1.0.0">`)
	for xml.Len() < 120000 {
		xml.WriteString(`<wps:Output><ows:Identifier>band_`)
		xml.WriteString(strings.Repeat("x", r.IntN(5)))
		xml.WriteString(`</ows:Identifier><wps:LiteralData dataType="xs:double">`)
		xml.WriteString(time.Unix(r.Int64N(1<<31), 0).UTC().Format(time.RFC3339Nano))
		xml.WriteString(`</wps:LiteralData></wps:Output>`)
	}
	binary := make([]byte, 80000)
	for i := range binary {
		binary[i] = byte(r.Uint32() >> 26) // low entropy, many short matches
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"utf-8 text", []byte("Grüße, 東京, ½ — résumé\n")},
		{"wps xml 120K", []byte(xml.String())},
		{"binary 80K", binary},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, "-c",
				"import base64, sys, zlib; sys.stdout.write(base64.b64encode(zlib.compress(sys.stdin.buffer.read())).decode())")
			cmd.Stdin = bytes.NewReader(tc.data)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v: %s", py, err, stderr.String())
			}
			if got := djangodb.EncodeResponse(tc.data); got != string(want) {
				t.Fatalf("EncodeResponse of %d bytes differs from Python's text (%d vs %d characters)", len(tc.data), len(got), len(want))
			}
		})
	}
}

func TestDecodeResponseRejectsCorruptText(t *testing.T) {
	for _, text := range []string{"not base64!", "aGVsbG8=" /* not zlib */, "eJwzNNUzAAAB8wDG" /* bad checksum */} {
		if _, err := djangodb.DecodeResponse(text); err == nil {
			t.Errorf("DecodeResponse(%q) succeeded, want an error", text)
		}
	}
}
