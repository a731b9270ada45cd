package djangodb_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

type journalModer interface {
	JournalMode(ctx context.Context) (string, error)
}

func journalMode(t *testing.T, s djangodb.Store) string {
	t.Helper()
	m, err := s.(journalModer).JournalMode(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSQLiteWAL: WAL is used only when asked for, then stays with the file
// (for atpd and Django alike), and the Django tracker keeps working on it
// beside atpd.
func TestSQLiteWAL(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	path := djangodb.SQLitePath(testdb.SQLite(t, c))
	plain := openSQLiteStore(t, path, testdb.Options(c))
	if m := journalMode(t, plain); m != "delete" {
		t.Fatalf("journal mode without SQLiteWAL = %q, want Django's default \"delete\"", m)
	}
	plain.Close()

	opts := testdb.Options(c)
	opts.SQLiteWAL = true
	wal := openSQLiteStore(t, path, opts)
	if m := journalMode(t, wal); m != "wal" {
		t.Fatalf("journal mode with SQLiteWAL = %q, want wal", m)
	}
	again := openSQLiteStore(t, path, testdb.Options(c))
	if m := journalMode(t, again); m != "wal" {
		t.Errorf("journal mode of a WAL file opened without SQLiteWAL = %q, want it left as wal", m)
	}

	// A Django producer enqueues while atpd's store has the file open, and
	// both see each other's rows.
	sqliteRegister(t, wal, djangodb.TypeSpec{Identifier: "Sum", Handler: "tools.atp_demo.handler", Timeout: 60})
	cmd := exec.Command(testdb.Python(t), "producer.py", "enqueue", "Sum", "from-django", "--json", "[1, 2]")
	cmd.Dir = filepath.Join(testdb.RepoRoot(t), "integration")
	cmd.Env = testdb.DjangoEnv(t, "sqlite:"+path, c)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Django enqueue on a WAL file: %v\n%s", err, out)
	}
	got, err := wal.Claim(t.Context(), 1, 4, "")
	if err != nil || len(got) != 1 || got[0].Identifier != "from-django" {
		t.Fatalf("claim of Django's task = %+v, %v", got, err)
	}
	res, err := wal.Complete(t.Context(), []djangodb.Completion{{InstanceID: got[0].InstanceID, Starts: got[0].Starts, Outcome: djangodb.OutcomeFinish,
		Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("3.0"), "text/plain")}}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("complete: %v %+v", err, res)
	}
	cmd = exec.Command(testdb.Python(t), "producer.py", "response", "Sum", "from-django")
	cmd.Dir = filepath.Join(testdb.RepoRoot(t), "integration")
	cmd.Env = testdb.DjangoEnv(t, "sqlite:"+path, c)
	out, err := cmd.CombinedOutput()
	if err != nil || !jsonHas(string(out), `"text": "3.0"`) {
		t.Fatalf("Django reads the response from the WAL file: %v\n%s", err, out)
	}
}

func jsonHas(out, frag string) bool {
	for i := 0; i+len(frag) <= len(out); i++ {
		if out[i:i+len(frag)] == frag {
			return true
		}
	}
	return false
}
