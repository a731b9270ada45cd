package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is one running atpd process.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	ready   chan struct{}
	exited  chan error
}

// startDaemon runs atpd on dsn with args and waits until it logs that its
// task loop started.
func (b *bench) startDaemon(ctx context.Context, label, dsn string, args ...string) (*daemon, error) {
	logPath := filepath.Join(b.o.tmp, strings.NewReplacer("/", "_").Replace(label)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	full := append([]string{"--db", dsn, "--use-tz", "--python", b.o.python}, args...)
	full = append(full, b.o.daemonArgs...)
	cmd := exec.Command(b.o.atpd, full...)
	cmd.Dir = b.o.repo
	out, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", b.o.atpd, err)
	}
	d := &daemon{cmd: cmd, logPath: logPath, ready: make(chan struct{}), exited: make(chan error, 1)}
	var once sync.Once
	go func() {
		// Copy the log to the file, watching for the start-up line.
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if strings.Contains(line, "ATPD: started") {
				once.Do(func() { close(d.ready) })
			}
		}
		io.Copy(logFile, out)
		logFile.Close()
		d.exited <- cmd.Wait()
	}()
	select {
	case <-d.ready:
		return d, nil
	case err := <-d.exited:
		return nil, fmt.Errorf("atpd exited during start-up (%v); log in %s", err, logPath)
	case <-time.After(time.Minute):
		d.kill()
		return nil, fmt.Errorf("atpd did not start within a minute; log in %s", logPath)
	case <-ctx.Done():
		d.kill()
		return nil, ctx.Err()
	}
}

func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

// stop ends the daemon with SIGINT (drain) and waits for it.
func (d *daemon) stop() error {
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("atpd exited with %v; log in %s", err, d.logPath)
		}
		return nil
	case <-time.After(time.Minute):
		d.kill()
		return fmt.Errorf("atpd did not stop within a minute of SIGINT; log in %s", d.logPath)
	}
}

// peakRSS returns the daemon's VmHWM (peak resident set) in bytes.
func (d *daemon) peakRSS() (int64, error) {
	return procStatus(d.cmd.Process.Pid, "VmHWM")
}

func procStatus(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != field {
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: %s: %q", pid, field, v)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}
