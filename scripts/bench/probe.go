package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// pgProbe watches a PostgreSQL drain from the server's side: the
// database's committed transactions (pg_stat_database.xact_commit), the
// WAL written (pg_current_wal_lsn, cluster-wide), and, sampled every
// probeEvery, what the daemon's sessions are doing (pg_stat_activity:
// idle, running, or waiting on which event), with the backends' process
// ids for their CPU time (read at every sample, so that a backend's time
// is known after it ended).
type pgProbe struct {
	db      *sql.DB
	dbName  string
	commits int64
	lsn     string
	wal     *walFollower // nil: not measured (walErr says why)
	walErr  error

	mu      sync.Mutex
	states  map[string]int
	samples int
	cpu     map[int]time.Duration // by backend, as last read
	stop    chan struct{}
	done    chan struct{}
}

const probeEvery = 10 * time.Millisecond

// startPGProbe reads the counters of database dbName and starts sampling
// its sessions, through the admin connection (another database, so that
// the probe's own queries are not counted).
func startPGProbe(ctx context.Context, admin, dbName, waldump string) (*pgProbe, error) {
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	p := &pgProbe{db: db, dbName: dbName, states: map[string]int{}, cpu: map[int]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
	if p.commits, p.lsn, err = p.counters(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if waldump != "" {
		var dataDir string
		var oid int64
		err := db.QueryRowContext(ctx, `SELECT current_setting('data_directory'), (SELECT oid FROM pg_database WHERE datname = $1)::bigint`, dbName).Scan(&dataDir, &oid)
		if err == nil {
			p.wal, err = startWALFollower(ctx, waldump, dataDir, oid, p.lsn)
		}
		if err != nil {
			p.walErr = err
		}
	}
	go p.sample(ctx)
	return p, nil
}

func (p *pgProbe) counters(ctx context.Context) (commits int64, lsn string, err error) {
	if _, err = p.db.ExecContext(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		return
	}
	err = p.db.QueryRowContext(ctx, `SELECT xact_commit, pg_current_wal_lsn()::text FROM pg_stat_database WHERE datname = $1`, p.dbName).Scan(&commits, &lsn)
	return
}

func (p *pgProbe) sample(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rows, err := p.db.QueryContext(ctx, `SELECT pid, coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, '')
			FROM pg_stat_activity
			WHERE datname = $1 AND backend_type = 'client backend' AND application_name <> $2 AND query NOT ILIKE 'listen%'`, p.dbName, benchApp)
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.samples++
		for rows.Next() {
			var pid int
			var state, typ, event string
			if rows.Scan(&pid, &state, &typ, &event) != nil {
				continue
			}
			if _, ok := p.cpu[pid]; !ok {
				p.cpu[pid] = 0 // read below, and at every sample from now on
			}
			p.states[sessionState(state, typ, event)]++
		}
		for pid := range p.cpu {
			if d, err := procCPU(pid); err == nil {
				p.cpu[pid] = d
			}
		}
		p.mu.Unlock()
		rows.Close()
	}
}

// sessionState names what a session was doing in one sample.
func sessionState(state, typ, event string) string {
	switch {
	case state == "idle":
		return "idle" // waiting for the daemon's next transaction
	case strings.HasPrefix(state, "idle in transaction"):
		return "idle_in_tx" // waiting for the daemon within a transaction
	case typ == "":
		return "cpu" // executing, no wait event
	default:
		return typ + ":" + event
	}
}

// abort stops the sampling, recording nothing.
func (p *pgProbe) abort() {
	close(p.stop)
	<-p.done
	p.db.Close()
	if p.wal != nil {
		p.wal.end.Store(1)
		p.wal.kill()
		<-p.wal.done
	}
}

// backendCPU is the CPU time the sampled backends used, as last read.
func (p *pgProbe) backendCPU() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sum time.Duration
	for _, d := range p.cpu {
		sum += d
	}
	return sum
}

// finish stops the sampling and records, per task, the commits and WAL
// bytes (the cluster's, and the database's own: walFollower) since the
// start (ownCommits: the bench's own transactions on the
// database meanwhile, subtracted), and the session states as percentages
// of all session samples.
func (p *pgProbe) finish(ctx context.Context, b *bench, name string, tasks int, ownCommits int64) error {
	close(p.stop)
	<-p.done
	defer p.db.Close()
	// Backends flush their counters when they end: the daemon has
	// stopped; give its backends a moment to exit.
	time.Sleep(500 * time.Millisecond)
	commits, lsn, err := p.counters(ctx)
	if err != nil {
		return err
	}
	var wal int64
	if err := p.db.QueryRowContext(ctx, `SELECT pg_wal_lsn_diff($1, $2)::bigint`, lsn, p.lsn).Scan(&wal); err != nil {
		return err
	}
	b.record(name+"/commits_per_task", float64(commits-p.commits-ownCommits)/float64(tasks))
	b.record(name+"/wal_bytes_per_task/cluster", float64(wal)/float64(tasks))
	if p.wal != nil {
		own, err := p.wal.stop(lsn)
		if err != nil {
			p.walErr = err
		} else {
			b.record(name+"/wal_bytes_per_task", float64(own)/float64(tasks))
		}
	}
	if p.walErr != nil {
		b.log.Warn("bench: the database's own WAL not measured", "error", p.walErr)
	}
	total := 0
	var keys []string
	for k, n := range p.states {
		total += n
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return p.states[keys[i]] > p.states[keys[j]] })
	for _, k := range keys {
		if pct := 100 * float64(p.states[k]) / float64(total); pct >= 1 {
			b.record(name+"/pg_sessions_pct/"+k, pct)
		}
	}
	return nil
}

// procCPU is a process's user and system CPU time, from /proc/PID/stat
// (in clock ticks of 1/100 s, Linux's USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// descendants returns the process ids of pid's children, their
// children, and so on.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(raw)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

var (
	waldumpRec = regexp.MustCompile(`len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+)/([0-9A-F]+),`)
	waldumpRel = regexp.MustCompile(`rel \d+/(\d+)/\d+`)
)

// walFollower decodes the WAL from a start LSN on as it is written
// (pg_waldump -f on the server's pg_wal: the bench runs on the server's
// machine), summing what one database wrote: the records of every
// transaction that touched one of its relations (their commit records
// included) and the records outside transactions on its relations
// (full-page images for hint bits, page pruning). Other databases' work on
// the cluster is left out. It follows as the WAL is written because a busy
// cluster recycles its segments within seconds; pg_waldump ends when it
// reaches a segment not yet created, so it is started again from the last
// record read.
type walFollower struct {
	mu  sync.Mutex
	cmd *exec.Cmd // the pg_waldump -f running
	// end is the LSN to stop at, set by stop: from then on no pg_waldump
	// -f is to run (a new one would wait forever on a quiet cluster).
	end  atomic.Uint64
	done chan struct{}
	sum  int64
	err  error
}

func parseLSN(hi, lo string) uint64 {
	h, _ := strconv.ParseUint(hi, 16, 32)
	l, _ := strconv.ParseUint(lo, 16, 32)
	return h<<32 | l
}

func startWALFollower(ctx context.Context, waldump, dataDir string, oid int64, from string) (*walFollower, error) {
	w := &walFollower{done: make(chan struct{})}
	ours := strconv.FormatInt(oid, 10)
	hi, lo, _ := strings.Cut(from, "/")
	last := parseLSN(hi, lo) // records at or before it are counted
	first := true
	txBytes := map[string]int64{}
	txOurs := map[string]bool{}
	// follow runs pg_waldump once from last, with args (-f, or -e END);
	// false when the end is reached.
	follow := func(args ...string) (bool, error) {
		args = append(args, "-p", filepath.Join(dataDir, "pg_wal"), "-s", fmt.Sprintf("%X/%X", last>>32, uint32(last)))
		cmd := exec.CommandContext(ctx, waldump, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return false, err
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return false, err
		}
		if args[0] == "-f" {
			w.mu.Lock()
			w.cmd = cmd
			if w.end.Load() != 0 { // stop came first: kill saw no cmd
				cmd.Process.Kill()
			}
			w.mu.Unlock()
		}
		defer func() {
			cmd.Process.Kill()
			io.Copy(io.Discard, out)
			cmd.Wait()
		}()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			m := waldumpRec.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			lsn := parseLSN(m[3], m[4])
			if !first && lsn <= last {
				continue // read by the previous pg_waldump
			}
			first = false
			if end := w.end.Load(); end != 0 && lsn >= end {
				return false, nil
			}
			last = lsn
			n, _ := strconv.ParseInt(m[1], 10, 64)
			rel := false
			for _, r := range waldumpRel.FindAllStringSubmatch(line, -1) {
				rel = rel || r[1] == ours
			}
			switch tx := m[2]; {
			case tx != "0":
				txBytes[tx] += n
				txOurs[tx] = txOurs[tx] || rel
			case rel:
				w.sum += n
			}
		}
		if err := sc.Err(); err != nil {
			return false, err
		}
		if strings.Contains(stderr.String(), "could not find file") && first {
			// The start is gone already: nothing to follow.
			return false, fmt.Errorf("pg_waldump: %s", strings.TrimSpace(stderr.String()))
		}
		return true, nil
	}
	go func() {
		defer close(w.done)
		for {
			again, err := follow("-f")
			if err != nil {
				w.err = err
				return
			}
			if !again || w.end.Load() != 0 || ctx.Err() != nil {
				break
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		// pg_waldump's output to a pipe is block-buffered: the follower
		// killed at stop took the last records it decoded with it (on a
		// quiet cluster, nothing after them fills the buffer). One
		// bounded run, which exits and so flushes, reads the rest.
		if end := w.end.Load(); end > 1 && ctx.Err() == nil {
			if _, err := follow("-e", fmt.Sprintf("%X/%X", end>>32, uint32(end))); err != nil {
				w.err = err
				return
			}
		}
		for tx, n := range txBytes {
			if txOurs[tx] {
				w.sum += n
			}
		}
	}()
	return w, nil
}

func (w *walFollower) kill() {
	w.mu.Lock()
	if w.cmd != nil {
		w.cmd.Process.Kill()
	}
	w.mu.Unlock()
}

// stop ends the follower, reads what remains up to the LSN end and
// returns the database's WAL bytes.
func (w *walFollower) stop(end string) (int64, error) {
	hi, lo, _ := strings.Cut(end, "/")
	w.end.Store(parseLSN(hi, lo))
	w.kill()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		w.end.Store(1) // the bounded run ends at its next record
		<-w.done
		return 0, errors.New("pg_waldump did not reach the end LSN within 30 s")
	}
	return w.sum, w.err
}
