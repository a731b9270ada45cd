package djangodb_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// Environment of the claim helper process (the test binary re-executed).
const (
	claimHelperEnv = "ATPD_TEST_PG_CLAIM_HELPER_DSN"
	claimHelperID  = 0x7E57
)

// TestPostgresClaimHelper is not a test: it is the second OS process of
// TestPostgresConcurrentClaims. It dequeues until the queue is empty after
// its parent says go, printing "claimed ID" per instance.
func TestPostgresClaimHelper(t *testing.T) {
	dsn := os.Getenv(claimHelperEnv)
	if dsn == "" {
		t.Skip("only runs as the helper process of TestPostgresConcurrentClaims")
	}
	s := openPostgres(t, dsn, djangodb.Options{UseTZ: true})
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatalf("wait for go: %v", err)
	}
	for {
		ids, err := s.Dequeue(t.Context(), claimHelperID, 2, "")
		if errors.Is(err, djangodb.ErrQueueEmpty) {
			return
		}
		if err != nil {
			t.Fatalf("helper dequeue: %v", err)
		}
		for _, id := range ids {
			fmt.Printf("claimed %d\n", id)
		}
	}
}

// claimer is one party taking tasks from the queue.
type claimer struct {
	name  string
	ready func() // blocks until the claimer can start at once
	run   func() ([]int64, error)
}

// TestPostgresConcurrentClaims drains one queue with every kind of claimer
// at once: atpd stores in goroutines, an atpd store in a second OS process,
// the reference daemon's claim replayed in SQL, and the real Django tracker
// (integration/producer.py). Every instance must be claimed exactly once.
func TestPostgresConcurrentClaims(t *testing.T) {
	const tasks = 500
	c := testdb.Config{UseTZ: true, TimeZone: "UTC"}
	dsn := testdb.Postgres(t, c)
	opts := testdb.Options(c)
	opts.MaxQueueSize = tasks
	setup := openPostgres(t, dsn, opts)
	if _, err := setup.RegisterType(t.Context(), djangodb.TypeSpec{Identifier: "C", Handler: "h.h", Timeout: 3600}); err != nil {
		t.Fatal(err)
	}
	all := map[int64]bool{}
	for i := range tasks {
		id, err := setup.Enqueue(t.Context(), "C", fmt.Sprint("t", i), okInput, "")
		if err != nil {
			t.Fatal(err)
		}
		all[id] = true
	}
	// The reference claim takes the oldest row by time, atpd the lowest id.
	// With equal orders atpd always holds the head and the reference claim
	// only ever loses; reversed times make the two start at opposite ends
	// and fight where they meet.
	if _, err := rawDB(t, dsn).Exec(`UPDATE processes_task SET time = time - id * interval '1 second'`); err != nil {
		t.Fatal(err)
	}

	var claimers []claimer
	for i := range 4 {
		s := openPostgres(t, dsn, testdb.Options(c))
		// Half claim with Dequeue, half with Claim (claim and start).
		cl := claimer{
			name:  fmt.Sprintf("atpd goroutine %d (Dequeue, limit %d)", i, i+1),
			ready: func() {},
			run:   func() ([]int64, error) { return dequeueAll(t.Context(), s, int64(i+1), i+1) },
		}
		if i%2 == 1 {
			cl.name = fmt.Sprintf("atpd goroutine %d (Claim, limit %d)", i, i+1)
			cl.run = func() ([]int64, error) { return claimAll(t.Context(), s, int64(i+1), i+1) }
		}
		claimers = append(claimers, cl)
	}
	claimers = append(claimers, helperProcess(t, dsn))
	for i := range 2 {
		db := rawDB(t, dsn)
		claimers = append(claimers, claimer{
			name:  fmt.Sprintf("reference claim in SQL %d", i),
			ready: func() {},
			run:   func() ([]int64, error) { return referenceDequeueAll(t.Context(), db, int64(0x5EF0+i)) },
		})
	}
	claimers = append(claimers, djangoTracker(t, dsn, c))

	claimed := make([][]int64, len(claimers))
	errs := make([]error, len(claimers))
	for _, cl := range claimers {
		cl.ready()
	}
	var wg sync.WaitGroup
	for i, cl := range claimers {
		wg.Go(func() { claimed[i], errs[i] = cl.run() })
	}
	wg.Wait()

	by := map[int64]string{}
	for i, cl := range claimers {
		if errs[i] != nil {
			t.Errorf("%s: %v", cl.name, errs[i])
		}
		t.Logf("%s claimed %d tasks", cl.name, len(claimed[i]))
		for _, id := range claimed[i] {
			if other, dup := by[id]; dup {
				t.Errorf("instance %d claimed by %s and by %s", id, other, cl.name)
			}
			if !all[id] {
				t.Errorf("%s claimed unknown instance %d", cl.name, id)
			}
			by[id] = cl.name
		}
	}
	if len(by) != tasks {
		t.Errorf("%d of %d instances claimed", len(by), tasks)
	}
	var atpd, reference, started int
	for _, name := range by {
		if strings.HasPrefix(name, "atpd") {
			atpd++
		} else {
			reference++
		}
		if strings.Contains(name, "(Claim,") {
			started++
		}
	}
	if atpd == 0 || reference == 0 {
		t.Errorf("atpd claimed %d, the reference claims %d: the race needs both to win some", atpd, reference)
	}

	db := rawDB(t, dsn)
	var scheduledRecords, instancesWithOne, waiting, running, runningRecords, other int
	err := db.QueryRow(`SELECT
			(SELECT count(*) FROM processes_logrecord WHERE status = 2),
			(SELECT count(*) FROM (SELECT instance_id FROM processes_logrecord WHERE status = 2
				GROUP BY instance_id HAVING count(*) = 1) one),
			(SELECT count(*) FROM processes_task),
			(SELECT count(*) FROM processes_instance WHERE status = 3),
			(SELECT count(*) FROM processes_logrecord WHERE status = 3),
			(SELECT count(*) FROM processes_instance WHERE status NOT IN (2, 3))`).
		Scan(&scheduledRecords, &instancesWithOne, &waiting, &running, &runningRecords, &other)
	if err != nil {
		t.Fatal(err)
	}
	if scheduledRecords != tasks || instancesWithOne != tasks || waiting != 0 || other != 0 {
		t.Errorf("after the drain: %d SCHEDULED records, %d instances with exactly one, %d task rows left, %d instances neither SCHEDULED nor RUNNING; want %d, %d, 0, 0",
			scheduledRecords, instancesWithOne, waiting, other, tasks, tasks)
	}
	if running != started || runningRecords != started {
		t.Errorf("%d instances RUNNING with %d RUNNING records; Claim took %d", running, runningRecords, started)
	}
}

func dequeueAll(ctx context.Context, s djangodb.Tracker, server int64, limit int) ([]int64, error) {
	var out []int64
	for {
		ids, err := s.Dequeue(ctx, server, limit, "")
		if errors.Is(err, djangodb.ErrQueueEmpty) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ids...)
	}
}

func claimAll(ctx context.Context, s djangodb.Store, server int64, limit int) ([]int64, error) {
	var out []int64
	for {
		sts, err := s.Claim(ctx, server, limit, "")
		if errors.Is(err, djangodb.ErrQueueEmpty) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, st := range sts {
			out = append(out, st.InstanceID)
		}
	}
}

func rawDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	return postgresHarness.DB(t, dsn)
}

// referenceDequeueAll claims as tracker.dequeueTask does, statement by
// statement in autocommit: pick the oldest waiting row, claim it with
// UPDATE ... WHERE lock = 0 (retrying when another claimer won), then
// schedule every row this server holds.
func referenceDequeueAll(ctx context.Context, db *sql.DB, server int64) ([]int64, error) {
	var out []int64
	for {
		var task int64
		err := db.QueryRowContext(ctx, `SELECT id FROM processes_task WHERE lock = 0 ORDER BY time LIMIT 1`).Scan(&task)
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		res, err := db.ExecContext(ctx, `UPDATE processes_task SET lock = $1, time = $2 WHERE id = $3 AND lock = 0`, server, time.Now(), task)
		if err != nil {
			return out, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		rows, err := db.QueryContext(ctx, `SELECT id, instance_id FROM processes_task WHERE lock = $1 ORDER BY time`, server)
		if err != nil {
			return out, err
		}
		var mine [][2]int64
		for rows.Next() {
			var r [2]int64
			if err := rows.Scan(&r[0], &r[1]); err != nil {
				rows.Close()
				return out, err
			}
			mine = append(mine, r)
		}
		rows.Close()
		for _, r := range mine {
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`UPDATE processes_instance SET status = 2, "timeUpdate" = $2 WHERE id = $1`, []any{r[1], time.Now()}},
				{`INSERT INTO processes_logrecord (instance_id, time, status, message) VALUES ($1, $2, 2, '')`, []any{r[1], time.Now()}},
				{`DELETE FROM processes_task WHERE id = $1`, []any{r[0]}},
			} {
				if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
					return out, err
				}
			}
			out = append(out, r[1])
		}
	}
}

// helperProcess starts TestPostgresClaimHelper in a second OS process.
func helperProcess(t *testing.T, dsn string) claimer {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestPostgresClaimHelper$", "-test.v")
	cmd.Env = append(os.Environ(), claimHelperEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper process: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out := bufio.NewScanner(stdout)
	return claimer{
		name: "atpd in a second process",
		ready: func() {
			for out.Scan() {
				if out.Text() == "ready" {
					return
				}
			}
			t.Fatalf("helper process ended before it was ready: %v", out.Err())
		},
		run: func() ([]int64, error) {
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				return nil, err
			}
			var ids []int64
			for out.Scan() {
				if rest, ok := strings.CutPrefix(out.Text(), "claimed "); ok {
					id, err := strconv.ParseInt(rest, 10, 64)
					if err != nil {
						return ids, fmt.Errorf("helper output %q: %w", out.Text(), err)
					}
					ids = append(ids, id)
				}
			}
			if err := cmd.Wait(); err != nil {
				return ids, fmt.Errorf("helper process: %w", err)
			}
			return ids, nil
		},
	}
}

// djangoTracker runs the real tracker.dequeueTask through producer.py's
// batch mode until it reports QueueEmpty.
func djangoTracker(t *testing.T, dsn string, c testdb.Config) claimer {
	t.Helper()
	live := e2e.NewProducer(t, dsn, c).Live()
	call := func(args ...any) (e2e.Answer, error) { return live.Send(args) }
	return claimer{
		name: "Django tracker (producer.py)",
		ready: func() {
			// The first answer means Django is set up.
			if _, err := call("status", "C", "t0"); err != nil {
				t.Fatalf("producer.py: %v", err)
			}
		},
		run: func() ([]int64, error) {
			var ids []int64
			for {
				r, err := call("dequeue", 0x0D7A)
				if err != nil {
					return ids, err
				}
				switch r.Exit {
				case 0:
				case 5: // QueueEmpty
					return ids, nil
				default:
					return ids, fmt.Errorf("dequeue: exit %d %s: %s", r.Exit, r.Error, r.Message)
				}
				var res struct{ IDs []int64 }
				if err := json.Unmarshal(r.Result, &res); err != nil {
					return ids, err
				}
				ids = append(ids, res.IDs...)
			}
		},
	}
}

// TestPostgresDequeueSkipsRowBeingClaimed holds the reference daemon's claim
// of the oldest task open in a transaction: Dequeue must neither wait for it
// nor take it, and after the claim commits the row stays the daemon's.
func TestPostgresDequeueSkipsRowBeingClaimed(t *testing.T) {
	c := testdb.Config{UseTZ: true, TimeZone: "UTC"}
	dsn := testdb.Postgres(t, c)
	s := openPostgres(t, dsn, testdb.Options(c))
	ctx := t.Context()
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "C", Handler: "h.h", Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 3 {
		id, err := s.Enqueue(ctx, "C", fmt.Sprint("t", i), okInput, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	db := rawDB(t, dsn)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE processes_task SET lock = 99, time = $1
		WHERE id = (SELECT min(id) FROM processes_task) AND lock = 0`, time.Now())
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("reference claim: %v, %d rows", err, n)
	}

	// A short deadline: waiting for the open claim would hit it.
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := s.Dequeue(short, 1, 10, "")
	if err != nil || len(got) != 2 || got[0] != ids[1] || got[1] != ids[2] {
		t.Fatalf("dequeue beside an open claim = %v, %v; want %v", got, err, ids[1:])
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dequeue(ctx, 1, 10, ""); !errors.Is(err, djangodb.ErrQueueEmpty) {
		t.Errorf("dequeue after the claim committed: %v, want ErrQueueEmpty", err)
	}
	var lock int64
	if err := db.QueryRow(`SELECT lock FROM processes_task WHERE instance_id = $1`, ids[0]).Scan(&lock); err != nil || lock != 99 {
		t.Errorf("claimed row: lock %d, %v; want 99", lock, err)
	}
}
