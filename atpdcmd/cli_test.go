package atpdcmd

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCLI runs the command line in-process, in an empty directory so that
// nothing can touch a real ./atpd.sqlite3, with no ATPD_ variable set.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLIEnv(t, nil, stdin, args...)
}

// runCLIEnv is runCLI with the environment variables env set.
func runCLIEnv(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ATPD_") || k == "DJANGO_SETTINGS_MODULE" {
			t.Setenv(k, "")
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommandLine(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings
		stderr     []string
		noStderr   []string
		noStdout   []string
		wantNoFile bool
	}{
		{name: "-h prints usage", args: []string{"-h"}, code: 0,
			stdout: []string{"Usage:", "-p, --python-path", "-s, --settings", "-d, --db-alias", "-n, --workers", "--db", "--config", "SIGTERM"}},
		{name: "--help", args: []string{"--help"}, code: 0, stdout: []string{"Usage:"}},
		{name: "subcommand -h", args: []string{"migrate", "-h"}, code: 0, stdout: []string{"migrate", "--db"}},
		{name: "decode-input -h", args: []string{"decode-input", "-h"}, code: 0, stdout: []string{"--type", "--id"}},
		{name: "unknown long option", args: []string{"--bogus"}, code: 2,
			stderr: []string{"unknown flag: --bogus", "--help'."}},
		{name: "unknown short option", args: []string{"-x"}, code: 2,
			stderr: []string{"unknown shorthand flag: 'x'", "--help'."}},
		{name: "unknown option after valid ones", args: []string{"-n", "2", "-p", "/x", "-q"}, code: 2,
			stderr: []string{"-q", "--help'."}},
		{name: "missing value", args: []string{"-s"}, code: 2, stderr: []string{"flag needs an argument", "--help'."}},
		{name: "non-numeric -n", args: []string{"-n", "four"}, code: 2, stderr: []string{"four", "--help'."}},
		{name: "stray argument", args: []string{"settings"}, code: 2, stderr: []string{`unknown command "settings"`, "--help'."}},
		{name: "daemon flag on a subcommand", args: []string{"migrate", "-n", "2"}, code: 2, stderr: []string{"-n", "--help'."}},
		{name: "decode-input --type without --id", args: []string{"decode-input", "--type", "T"}, code: 2,
			stderr: []string{"--type and --id go together", "--help'."}},
		{name: "invalid setting names the field", args: []string{"--log-format", "xml"}, code: 2,
			stderr: []string{"log_format", "xml", "See 'atpd --help'."}, noStderr: []string{"Usage:"}, wantNoFile: true},
		{name: "invalid db scheme hides the password", args: []string{"--db", "mysql://eox:s3cret@h/db"}, code: 2,
			stderr: []string{"config: db:", "mysql://eox:xxxxx@h/db"}, noStderr: []string{"s3cret"}, wantNoFile: true},
		{name: "bad config file", args: []string{"--config", "/nonexistent/atpd.yaml"}, code: 1,
			stderr: []string{"/nonexistent/atpd.yaml"}, wantNoFile: true},
		{name: "unreachable database hides the password", args: []string{"--db", "postgres://eox:s3cret@127.0.0.1:1/eox?connect_timeout=5"}, code: 1,
			stdout: []string{"start-up failed"}, stderr: []string{"eox:xxxxx@127.0.0.1:1"}, noStderr: []string{"s3cret"}, noStdout: []string{"s3cret"}},
		{name: "json logs", args: []string{"--log-format", "json", "--db", "postgres://eox@127.0.0.1:1/eox"}, code: 1,
			stdout: []string{`"level":"INFO","msg":"ATPD: pid=`, `"server_id":"0x`, `"level":"ERROR","msg":"ATPD: start-up failed"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			for _, s := range tc.noStdout {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout shows %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.noStderr {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr shows %q:\n%s", s, stderr)
				}
			}
			if tc.wantNoFile {
				if _, err := os.Stat("atpd.sqlite3"); err == nil {
					t.Errorf("a failed start created ./atpd.sqlite3")
				}
			}
		})
	}
}

// TestShutdownPhases drives the signal state machine with fake daemon
// phases: SIGINT drains, SIGTERM or a second signal aborts, a signal
// during an abort exits at once with 128+signal.
func TestShutdownPhases(t *testing.T) {
	cases := []struct {
		name      string
		signals   []syscall.Signal
		wantStop  bool
		wantAbort bool
		wantExit  int // -1: no exit
	}{
		{"SIGINT drains", []syscall.Signal{syscall.SIGINT}, true, false, -1},
		{"SIGTERM aborts", []syscall.Signal{syscall.SIGTERM}, false, true, -1},
		{"second SIGINT aborts", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}, true, true, -1},
		{"SIGTERM after SIGINT aborts", []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}, true, true, -1},
		{"third signal exits", []syscall.Signal{syscall.SIGINT, syscall.SIGINT, syscall.SIGINT}, true, true, 130},
		{"SIGINT during abort exits", []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}, false, true, 130},
		{"second SIGTERM exits", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}, false, true, 143},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stopped, aborted := make(chan struct{}, 2), make(chan struct{}, 2)
			exited := make(chan int, 1)
			done := make(chan struct{})
			var logBuf bytes.Buffer
			sd := &shutdown{
				stop:  func() { stopped <- struct{}{} },
				abort: func() { aborted <- struct{}{} },
				exit:  func(code int) { exited <- code },
				log:   slog.New(slog.NewTextHandler(&logBuf, nil)),
			}
			sigs := make(chan os.Signal)
			watched := make(chan struct{})
			go func() {
				sd.watch(sigs, done)
				close(watched)
			}()
			for _, s := range tc.signals {
				sigs <- s
			}
			// Each send returned once watch took the signal; a watch that
			// exited takes no more, so the daemon's end is signalled now.
			close(done)
			<-watched
			await := func(ch chan struct{}, want bool, what string) {
				t.Helper()
				if !want {
					select {
					case <-ch:
						t.Errorf("%s called", what)
					default:
					}
					return
				}
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					t.Errorf("%s not called", what)
				}
			}
			await(stopped, tc.wantStop, "Stop")
			await(aborted, tc.wantAbort, "Abort")
			select {
			case code := <-exited:
				if code != tc.wantExit {
					t.Errorf("exit(%d), want %d", code, tc.wantExit)
				}
			default:
				if tc.wantExit != -1 {
					t.Errorf("no exit, want exit(%d)", tc.wantExit)
				}
			}
			if !strings.Contains(logBuf.String(), "signal=") {
				t.Errorf("log does not name the signal:\n%s", logBuf.String())
			}
		})
	}
}
