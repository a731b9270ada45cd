package testdb

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var sqliteFiles keyedOnce

// SQLite copies a SQLite file whose tables Django's migrate made with the
// settings of c into t.TempDir() and returns its "sqlite:/path" DSN.
func SQLite(t testing.TB, c Config) string {
	t.Helper()
	py := probePython()
	if py.djangoErr != nil {
		unavailable(t, "%v", py.djangoErr)
	}
	root := RepoRoot(t)
	hash, err := sourceHash(root, py.djangoVersion, c)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	cached, err := sqliteFiles.do(hash, func() (string, error) {
		return buildSQLite(py.path, root, c, hash)
	})
	if err != nil {
		t.Fatalf("testdb: SQLite cache for %s: %v", c, err)
	}
	path := filepath.Join(t.TempDir(), "atpd.sqlite3")
	if err := copyFile(cached, path); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return "sqlite:" + path
}

// buildSQLite returns the cached migrated file for hash, migrating it first
// when absent. Parallel test binaries may both migrate; each migrates its own
// temporary file and renames it into place, and rename is atomic, so a cached
// name never holds a half-migrated file.
func buildSQLite(py, root string, c Config, hash string) (string, error) {
	cached := filepath.Join(os.TempDir(), "atpd-testdb-"+hash+".sqlite3")
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	dir, err := os.MkdirTemp("", "atpd-testdb-build-")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", cached, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "db.sqlite3")
	if err := migrate(py, root, "sqlite:"+tmp, c); err != nil {
		return "", err
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(tmp + suffix); err == nil {
			return "", fmt.Errorf("build %s: Django left %s behind; the copy would miss data", cached, tmp+suffix)
		}
	}
	// The temporary directory is in os.TempDir too, so rename stays on one
	// file system.
	if err := os.Rename(tmp, cached); err != nil {
		return "", fmt.Errorf("build %s: %w", cached, err)
	}
	return cached, nil
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy SQLite file %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy SQLite file to %s: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("copy SQLite file to %s: %w", dst, cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy SQLite file %s to %s: %w", src, dst, err)
	}
	return nil
}
