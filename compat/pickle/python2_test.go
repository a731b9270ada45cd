package pickle

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// python2Path finds a real Python 2.7 (Debian bullseye's python2.7, which
// scripts/setup-python2.sh installs for the tests). Missing, it skips
// locally and fails in CI.
func python2Path(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python2.7"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("/usr/bin/python2.7 not found; CI must provide it (scripts/setup-python2.sh)")
	}
	t.Skip("/usr/bin/python2.7 not found; run scripts/setup-python2.sh")
	return ""
}

type py2Vector struct {
	Name     string  `json:"name"`
	Module   string  `json:"module"`
	Protocol int     `json:"protocol"`
	Input    string  `json:"input"`
	JSON     *string `json:"json"`
}

// TestPython2Pickles: what a real Python 2.7 producer stored (pickle and
// cPickle, protocols 0, 1 and 2; str with non-ASCII bytes, unicode, long,
// datetime, Decimal, sets, old- and new-style instances, nested
// containers) decodes to the documented mapping, generated in this run by
// python2.7 (testdata/gen2.py).
func TestPython2Pickles(t *testing.T) {
	py := python2Path(t)
	out, err := exec.Command(py, filepath.Join("testdata", "gen2.py")).Output()
	if err != nil {
		t.Fatalf("gen2.py under %s: %v", py, err)
	}
	var vs []py2Vector
	if err := json.Unmarshal(out, &vs); err != nil {
		t.Fatalf("gen2.py output: %v", err)
	}
	if len(vs) < 150 {
		t.Fatalf("gen2.py made only %d vectors", len(vs))
	}
	for _, v := range vs {
		t.Run(v.Module+"/"+itoa(v.Protocol)+"/"+v.Name, func(t *testing.T) {
			val, err := Decode(v.Input)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if v.JSON == nil {
				// A datetime or time with a tzinfo class of the producer's
				// own is kept as the object it is, not guessed at.
				o, ok := val.(*Object)
				if !ok || o.Module != "datetime" || (o.Name != "datetime" && o.Name != "time") {
					t.Fatalf("decoded %#v, want a datetime.datetime or datetime.time *Object", val)
				}
				if len(o.Args) != 2 {
					t.Fatalf("args %#v, want the packed value and the tzinfo", o.Args)
				}
				if tz, ok := o.Args[1].(*Object); !ok || tz.Module != "py2values" || tz.Name != "FixedTZ" {
					t.Errorf("tzinfo %#v, want a py2values.FixedTZ *Object", o.Args[1])
				}
				return
			}
			got, err := ToJSON(val)
			if err != nil {
				t.Fatalf("ToJSON: %v", err)
			}
			if string(got) != *v.JSON {
				t.Errorf("ToJSON = %s\nwant      %s", got, *v.JSON)
			}
		})
	}
}
