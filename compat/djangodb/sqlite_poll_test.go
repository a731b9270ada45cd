package djangodb_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// TestSQLiteEmptyPollTakesNoWriteLock: polling an empty queue must not
// need the file's write lock, which a Django producer may be holding: the
// poll answers ErrQueueEmpty at once instead of waiting for the lock.
func TestSQLiteEmptyPollTakesNoWriteLock(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	path := djangodb.SQLitePath(testdb.SQLite(t, c))
	s := openSQLiteStore(t, path, testdb.Options(c))

	u := url.URL{Path: path}
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	t.Cleanup(func() { conn.ExecContext(context.Background(), `ROLLBACK`) })

	polls := []struct {
		name string
		poll func(ctx context.Context) error
	}{
		{"Dequeue", func(ctx context.Context) error {
			_, err := s.Dequeue(ctx, 0x1234, 8, "")
			return err
		}},
		{"Claim", func(ctx context.Context) error {
			_, err := s.Claim(ctx, 0x1234, 8, "")
			return err
		}},
	}
	for _, p := range polls {
		t.Run(p.name, func(t *testing.T) {
			// Well below busy_timeout: a poll that asked for the write
			// lock would still be waiting.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if err := p.poll(ctx); !errors.Is(err, djangodb.ErrQueueEmpty) {
				t.Fatalf("%s of an empty queue while another connection holds the write lock: %v, want ErrQueueEmpty", p.name, err)
			}
		})
	}
}
