package pyhandlers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/internal/testdb"
)

// The worker script must also run on Python 2.7 (old EOxServer deployments),
// which cannot be installed here; py2check.py rejects every Python-3-only
// construct it can see in the syntax tree. The second case proves the checker
// itself catches what it claims to.
func TestWorkerScriptIsPython27Syntax(t *testing.T) {
	py := testdb.Python(t)
	bad := filepath.Join(t.TempDir(), "py3only.py")
	if err := os.WriteFile(bad, []byte("def f(a, *, b: int) -> None:\n    nonlocal_x = f'{a}'\n    raise ValueError() from None\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		file     string
		wantFail []string
	}{
		{"worker.py", "worker.py", nil},
		{"checker sees Python 3 syntax", bad, []string{"keyword-only argument", "argument annotation", "return annotation", "f-string", "raise ... from"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(py, "testdata/py2check.py", tc.file).CombinedOutput()
			if len(tc.wantFail) == 0 {
				if err != nil {
					t.Fatalf("%s is not Python 2.7 syntax:\n%s", tc.file, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("py2check accepted %s:\n%s", tc.file, out)
			}
			for _, w := range tc.wantFail {
				if !strings.Contains(string(out), w) {
					t.Errorf("py2check did not report %q; output:\n%s", w, out)
				}
			}
		})
	}
}
