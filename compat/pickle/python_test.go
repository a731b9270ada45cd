package pickle

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"os"
	"os/exec"
	"testing"
)

// pythonPath finds the python3 the project standardises on. These tests
// need only its standard library (pickle, json), not Django, so they do
// not go through internal/testdb. Missing Python skips locally and fails
// in CI.
func pythonPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3 not found; CI must provide it")
	}
	t.Skip("python3 not found")
	return ""
}

// encodeRaw wraps a raw pickle in the stored form with the standard
// library, independently of Encode.
func encodeRaw(p []byte) (string, error) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(p); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
