package pickle

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRandomPythonValues: random nested values (every kind the mapping
// covers, including objects and non-string dict keys) pickled by python3
// with random protocols decode to the JSON Python derives for them, and
// re-encoded by Go load back in python3 equal to the originals.
func TestRandomPythonValues(t *testing.T) {
	py := pythonPath(t)
	n := "400"
	if testing.Short() {
		n = "50"
	}
	cmd := exec.Command(py, filepath.Join("testdata", "randvalues.py"), n, "20240601")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("randvalues.py: %v\n%s", err, stderr.String())
	}
	var cases []struct {
		Input    string `json:"input"`
		Protocol int    `json:"protocol"`
		JSON     string `json:"json"`
	}
	if err := json.Unmarshal(out, &cases); err != nil {
		t.Fatal(err)
	}
	var rt []rtCase
	for i, c := range cases {
		v, err := Decode(c.Input)
		if err != nil {
			t.Fatalf("value %d (protocol %d): %v\nwant %s", i, c.Protocol, err, c.JSON)
		}
		if got := mustJSON(t, v); got != c.JSON {
			t.Fatalf("value %d (protocol %d):\n got %s\nwant %s", i, c.Protocol, got, c.JSON)
		}
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("value %d: Encode: %v", i, err)
		}
		rt = append(rt, rtCase{Name: "random" + itoa(i), Input: enc, Original: c.Input, BytesLike: true})
	}
	results := runRoundTrip(t, rt)
	for _, c := range rt {
		if r := results[c.Name]; !r.OK {
			t.Errorf("%s: re-encoded value loads as %s, want %s %s", c.Name, r.Got, r.Want, r.Error)
		}
	}
}
