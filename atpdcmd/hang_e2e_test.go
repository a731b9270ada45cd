package atpdcmd

import (
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// silentServer accepts TCP connections and never answers, like a
// PostgreSQL host that is up but stuck; it returns the port.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestUnansweringDatabase: a PostgreSQL host that accepts connections and
// never answers neither hangs an operator command (the connection attempt
// is bounded by connect_timeout, 10 s unless the DSN says otherwise) nor
// keeps the daemon from honouring SIGINT during start-up.
func TestUnansweringDatabase(t *testing.T) {
	port := silentServer(t)
	dsn := "postgres://postgres@127.0.0.1:" + port + "/x?sslmode=disable"

	done := make(chan struct{})
	var code int
	var stderr string
	go func() {
		defer close(done)
		code, _, stderr = runBin(t, baseEnv(), "", "tasks", "--db", dsn+"&connect_timeout=1")
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("atpd tasks on a silent server did not return")
	}
	if code != 1 || !strings.Contains(stderr, "open database") || !strings.Contains(stderr, "timeout") {
		t.Errorf("atpd tasks: exit %d, stderr %q; want 1 and a timeout", code, stderr)
	}

	p := startAtpd(t, "silent", noPythonEnv(t), "--db", dsn)
	p.waitLine(`ATPD: task pick-up and writes`, startTimeout)
	p.signal(syscall.SIGINT)
	if code := p.wait(5 * time.Second); code != 130 {
		t.Errorf("daemon exit %d after SIGINT during start-up, want 130", code)
	}
	p.waitLine(`start-up interrupted by a signal`, time.Second)
}
