package pyhandlers

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/testdb"
)

// TestCheckImports: each path gives the message a task of it fails with
// under the reference daemon (issue 12, case 3), on Python 3 and 2.7,
// without running a handler.
func TestCheckImports(t *testing.T) {
	fid, err := filepath.Abs(filepath.Join("testdata", "fid"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, err, class string
	}{
		{"fid_pkg.mod.handler", "", ""},
		{"nodots", msgEmptyModule, "ValueError"},
		{"", msgEmptyModule, "ValueError"},
		{"fid_pkg.mod.", "module 'fid_pkg.mod' has no attribute ''", "AttributeError"},
		{"fid_pkg.mod", msgNotCallable, "TypeError"},
		{"fid_pkg.mod.nothere", "module 'fid_pkg.mod' has no attribute 'nothere'", "AttributeError"},
		{"no_such_pkg.mod.handler", "No module named 'no_such_pkg'", "ModuleNotFoundError"},
	}
	paths := make([]string, len(cases))
	for i, c := range cases {
		paths[i] = c.path
	}
	for _, py := range []struct {
		name   string
		python func(t *testing.T) string
	}{
		{"python3", func(t *testing.T) string { return testdb.Python(t) }},
		{"python2.7", python27},
	} {
		t.Run(py.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			got, version, err := CheckImports(ctx, Config{Python: py.python(t), PythonPath: []string{fid}}, paths)
			if err != nil {
				t.Fatal(err)
			}
			if version == "" {
				t.Errorf("no Python version reported")
			}
			for i, c := range cases {
				want := ImportResult{Handler: c.path, Error: c.err, Class: c.class}
				if py.name == "python2.7" {
					// Python 2's own words for these.
					switch {
					case strings.HasPrefix(c.err, "module '"):
						want.Error = "'module' object has no attribute '" + strings.TrimPrefix(c.path, "fid_pkg.mod.") + "'"
					case strings.HasPrefix(c.err, "No module named"):
						want.Error, want.Class = "No module named no_such_pkg.mod", "ImportError"
					}
				}
				if got[i] != want {
					t.Errorf("%q: got %+v, want %+v", c.path, got[i], want)
				}
			}
		})
	}
}

// TestCheckImportsErrors: a check that cannot run says why.
func TestCheckImportsErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no interpreter", Config{Python: "/nonexistent/python3"}, `python interpreter "/nonexistent/python3"`},
		{"settings that do not import", Config{Python: testdb.Python(t), SettingsModule: "no_such_settings"}, "django.setup() with settings no_such_settings failed: ModuleNotFoundError"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := CheckImports(t.Context(), tc.cfg, []string{"a.b"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
