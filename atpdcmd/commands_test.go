package atpdcmd

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/testdb"
)

// pythonBytes runs a Python snippet that writes bytes to stdout.
func pythonBytes(t *testing.T, code string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testdb.Python(t), "-c", code).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	return out
}

// jsonEqual compares JSON texts by value.
func jsonEqual(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("output %q is not JSON: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return string(gb) == string(wb)
}

func TestDecodeInputStdin(t *testing.T) {
	const value = `(1, 2.5, "x", None, True, [1, 2], {"k": "v"})`
	const wantJSON = `[1, 2.5, "x", null, true, [1, 2], {"k": "v"}]`
	cases := []struct {
		name   string
		python string // prints the stdin of decode-input
	}{
		{"stored text protocol 2", `import base64, pickle, sys, zlib; sys.stdout.write(base64.b64encode(zlib.compress(pickle.dumps(` + value + `, 2))).decode())`},
		{"stored text protocol 5", `import base64, pickle, sys, zlib; sys.stdout.write(base64.b64encode(zlib.compress(pickle.dumps(` + value + `, 5))).decode())`},
		{"stored text with newline", `import base64, pickle, sys, zlib; print(base64.b64encode(zlib.compress(pickle.dumps(` + value + `, 0))).decode())`},
		{"raw pickle protocol 4", `import pickle, sys; sys.stdout.buffer.write(pickle.dumps(` + value + `, 4))`},
		{"raw pickle protocol 0", `import pickle, sys; sys.stdout.buffer.write(pickle.dumps(` + value + `, 0))`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := pythonBytes(t, tc.python)
			code, stdout, stderr := runCLI(t, string(in), "decode-input")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !jsonEqual(t, stdout, wantJSON) {
				t.Errorf("got %s, want %s", stdout, wantJSON)
			}
		})
	}
}

func TestDecodeInputBad(t *testing.T) {
	cases := []struct {
		name  string
		stdin string
	}{
		{"empty", ""},
		{"not base64 nor pickle", "this is not an input!"},
		{"base64 of no zlib", "aGVsbG8gd29ybGQ="},
		{"truncated pickle", "\x80\x02(K\x01K\x02"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.stdin, "decode-input")
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.HasPrefix(stderr, "atpd: decode-input: ") {
				t.Errorf("stderr %q, want one line starting atpd: decode-input:", stderr)
			}
		})
	}
}

// TestDecodeInputDatabase reads a Python producer's input back from the
// database by type and identifier.
func TestDecodeInputDatabase(t *testing.T) {
	for _, kind := range bothDBs {
		t.Run(kind.name, func(t *testing.T) {
			db := newE2EDB(t, kind)
			db.batch(
				[]string{"register", "SequenceSum", "tools.atp_demo.handler"},
				[]string{"enqueue", "SequenceSum", "py2", "--literal", "(1, 2, 3, 4, 5)", "--protocol", "2"},
				[]string{"enqueue", "SequenceSum", "dict", "--json", `{"a": [1, "b"], "c": null}`},
			)
			args := func(ident string) []string {
				return append([]string{"decode-input", "--type", "SequenceSum", "--id", ident}, db.dbArgs()...)
			}
			code, stdout, stderr := runCLI(t, "", args("py2")...)
			if code != 0 || !jsonEqual(t, stdout, `[1, 2, 3, 4, 5]`) {
				t.Errorf("py2: exit %d, %s %s", code, stdout, stderr)
			}
			code, stdout, stderr = runCLI(t, "", args("dict")...)
			if code != 0 || !jsonEqual(t, stdout, `{"a": [1, "b"], "c": null}`) {
				t.Errorf("dict: exit %d, %s %s", code, stdout, stderr)
			}
			code, _, stderr = runCLI(t, "", args("missing")...)
			if code != 1 || !strings.Contains(stderr, "SequenceSum::missing") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("missing: exit %d, stderr %q; want 1 and one line naming the task", code, stderr)
			}
		})
	}
}

// TestMigrate creates the tables in a new SQLite file, then checks that
// Django's own migrate finds nothing left to do and that a second
// `atpd migrate` leaves the database alone.
func TestMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.sqlite3")
	dsn := "sqlite:" + path
	code, stdout, stderr := runCLI(t, "", "migrate", "--db", dsn)
	if code != 0 || !strings.Contains(stdout, "created the ATP tables") {
		t.Fatalf("first migrate: exit %d, %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "migrate", "--db", dsn)
	if code != 0 || !strings.Contains(stdout, "nothing to do") {
		t.Fatalf("second migrate: exit %d, %q %q", code, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testdb.Python(t), "manage.py", "migrate", "--check")
	cmd.Dir = filepath.Join(testdb.RepoRoot(t), "integration")
	cmd.Env = testdb.DjangoEnv(t, dsn, testdb.Config{UseTZ: true})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("Django migrate --check after atpd migrate: %v\n%s", err, out)
	}

	// A database Django migrated is left as it is.
	pg := testdb.Postgres(t, testdb.Config{UseTZ: true})
	code, stdout, stderr = runCLI(t, "", "migrate", "--db", pg)
	if code != 0 || !strings.Contains(stdout, "nothing to do") {
		t.Fatalf("migrate of a Django-migrated PostgreSQL: exit %d, %q %q", code, stdout, stderr)
	}
}

// TestMigrateConfigLayers: the database `atpd migrate` creates is the one
// the strongest layer names: flag over ATPD_DB over the config file.
func TestMigrateConfigLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "atpd.yaml")
	db := func(name string) string { return "sqlite:" + filepath.Join(dir, name+".sqlite3") }
	if err := os.WriteFile(file, []byte("db: "+db("file")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"file", nil, []string{"--config", file}, "file"},
		{"file named by ATPD_CONFIG", map[string]string{"ATPD_CONFIG": file}, nil, "file"},
		{"environment over file", map[string]string{"ATPD_DB": db("env")}, []string{"--config", file}, "env"},
		{"flag over environment", map[string]string{"ATPD_DB": db("env")}, []string{"--config", file, "--db", db("flag")}, "flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := strings.TrimPrefix(db(tc.want), "sqlite:")
			os.Remove(want)
			code, stdout, stderr := runCLIEnv(t, tc.env, "", append([]string{"migrate"}, tc.args...)...)
			if code != 0 || !strings.Contains(stdout, "created the ATP tables in sqlite:"+want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want the tables created in %s", code, stdout, stderr, want)
			}
			if _, err := os.Stat(want); err != nil {
				t.Errorf("migrate did not create %s: %v", want, err)
			}
		})
	}
}
