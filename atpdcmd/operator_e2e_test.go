package atpdcmd

// Tests of the operator-facing surface through the built binary: version,
// usage errors, validation, flag names, JSON schemas and messages, as an
// operator's shell sees them (exit status, stdout, stderr).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/testdb"
)

// runBin runs the atpd binary with args in a fresh directory, env
// (baseEnv when nil) and stdin, and returns its exit status and output.
func runBin(t *testing.T, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if env == nil {
		env = baseEnv()
	}
	cmd := exec.Command(atpdBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("atpd %s: still running after 2 minutes", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("atpd %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errOut.String()
}

// TestVersion: `atpd version`, its JSON and --version say which atpd this
// is, from the build information the Go toolchain recorded.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^atpd \S+ \(revision \S+, \S+, go1\.\d+\S* \w+/\w+\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runBin(t, nil, "", args...)
		if code != 0 || !line.MatchString(stdout) || stderr != "" {
			t.Errorf("atpd %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	code, stdout, _ := runBin(t, nil, "", "version", "--json")
	var v struct {
		Version   string `json:"version"`
		Revision  string `json:"revision"`
		GoVersion string `json:"go_version"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil || v.Version == "" || v.Revision == "" || !strings.HasPrefix(v.GoVersion, "go1.") {
		t.Errorf("atpd version --json: exit %d, %q (%v)", code, stdout, err)
	}
}

// TestEnqueueInputFlag: enqueue's input is --input-json; the old --json
// still works, with a deprecation warning, and the two together are a
// usage error.
func TestEnqueueInputFlag(t *testing.T) {
	db := newE2EDB(t, sqliteUTC)
	db.producer("register", "SequenceSum", "tools.atp_demo.handler")
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return runBin(t, nil, "", append(args, db.dbArgs()...)...)
	}
	if code, stdout, stderr := run("enqueue", "SequenceSum", "new", "--input-json", "[1, 2]", "--format", "json"); code != 0 || !strings.Contains(stdout, `"identifier": "new"`) || stderr != "" {
		t.Errorf("--input-json: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if got := db.pyInput("SequenceSum", "new"); got != "[1, 2]" {
		t.Errorf("--input-json: Python reads %s", got)
	}
	if code, _, stderr := run("enqueue", "SequenceSum", "old", "--json", "[3]"); code != 0 || !strings.Contains(stderr, "--json is deprecated, use --input-json") {
		t.Errorf("--json: exit %d, stderr %q", code, stderr)
	}
	if got := db.pyInput("SequenceSum", "old"); got != "[3]" {
		t.Errorf("--json: Python reads %s", got)
	}
	if code, _, stderr := run("enqueue", "SequenceSum", "both", "--json", "[3]", "--input-json", "[4]"); code == 0 || !strings.Contains(stderr, "give only --input-json") {
		t.Errorf("--json with --input-json: exit %d, stderr %q", code, stderr)
	}
	if code, stdout, _ := run("enqueue", "--help"); code != 0 || !strings.Contains(stdout, "--input-json") || strings.Contains(stdout, "  --json") {
		t.Errorf("enqueue --help: exit %d, documents --json as a flag or lacks --input-json:\n%s", code, stdout)
	}
}

// TestUsageErrors: a command-line mistake is one line on stderr naming the
// command, and a pointer to its --help, with exit status 2; runtime errors
// are one clear chain with exit status 1.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "atpd: unknown flag: --bogus\nSee 'atpd --help'.\n"},
		{[]string{"enqueue", "T"}, "atpd enqueue: accepts 2 arg(s), received 1\nSee 'atpd enqueue --help'.\n"},
		{[]string{"tasks", "--status", "DONE"}, "atpd tasks: --status \"DONE\": want ACCEPTED, SCHEDULED, RUNNING, PAUSED, FINISHED, FAILED or a code 0-6\nSee 'atpd tasks --help'.\n"},
		{[]string{"--log-format", "xml", "--log-level", "loud"}, "atpd: config: log_format: \"xml\" is neither \"text\" nor \"json\"; config: log_level: \"loud\" is not debug, info, warning or error\nSee 'atpd --help'.\n"},
	} {
		code, stdout, stderr := runBin(t, nil, "", tc.args...)
		if code != 2 || stderr != tc.want || stdout != "" {
			t.Errorf("atpd %s: exit %d, stdout %q\nstderr %q\nwant exit 2, stderr %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.want)
		}
	}
}

// TestErrorChains: what an operator reads when a command fails says what
// is missing once, without the layers' repetitions, and names the
// database once.
func TestErrorChains(t *testing.T) {
	db := newE2EDB(t, sqliteUTC)
	db.batch(
		[]string{"register", "SequenceSum", "tools.atp_demo.handler"},
		[]string{"enqueue", "SequenceSum", "waiting", "--literal", "[1]"},
	)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "NoType", "x"}, `atpd: delete NoType::x: task type "NoType" is not registered (atpd register adds it)`},
		{[]string{"status", "SequenceSum", "nope"}, "atpd: status SequenceSum::nope: no such task (atpd tasks --type SequenceSum lists the type's tasks)"},
		{[]string{"response", "SequenceSum", "waiting"}, "atpd: response SequenceSum::waiting: the task (status ACCEPTED) has no response"},
		{[]string{"enqueue", "NoType", "x"}, `atpd: enqueue NoType::x: task type "NoType" is not registered (atpd register adds it)`},
		{[]string{"enqueue", "SequenceSum", "bad", "--input-json", "[1,"}, "atpd: enqueue SequenceSum::bad: json input: unexpected end of the document"},
		{[]string{"tasks", "--type", "NoType"}, `atpd: tasks: task type "NoType" is not registered (atpd register adds it)`},
	} {
		code, _, stderr := runBin(t, nil, "", append(tc.args, db.dbArgs()...)...)
		if code != 1 || stderr != tc.want+"\n" {
			t.Errorf("atpd %s: exit %d, stderr %q, want exit 1 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	const dsn = "postgres://eox:s3cret@127.0.0.1:1/eox"
	code, _, stderr := runBin(t, nil, "", "status", "T", "x", "--db", dsn)
	if code != 1 || strings.Count(stderr, "127.0.0.1:1/eox") != 1 || strings.Contains(stderr, "s3cret") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("unreachable database: exit %d, stderr %q; want the redacted DSN once, in one line", code, stderr)
	}
}

// TestSettingsPythonWithoutDjango: -s runs the first python3 on PATH; when
// that one has no Django, the error names it and points at --python.
func TestSettingsPythonWithoutDjango(t *testing.T) {
	venv := filepath.Join(t.TempDir(), "venv")
	if out, err := exec.Command(testdb.Python(t), "-m", "venv", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Skipf("cannot make a virtual environment without Django: %v\n%s", err, out)
	}
	var env []string
	for _, kv := range baseEnv() {
		if k, v, _ := strings.Cut(kv, "="); k == "PATH" {
			kv = "PATH=" + filepath.Join(venv, "bin") + string(os.PathListSeparator) + v
		}
		env = append(env, kv)
	}
	code, _, stderr := runBin(t, env, "", "-s", "myproject.settings")
	want := "the Python interpreter python3 = " + filepath.Join(venv, "bin", "python3")
	if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "cannot import Django") ||
		!strings.Contains(stderr, "--python") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want one line naming %q and suggesting --python", code, stderr, want)
	}
	code, _, stderr = runBin(t, env, "", "-s", "myproject.settings", "--python", "no-such-python9")
	if code != 1 || !strings.Contains(stderr, `no Python interpreter "no-such-python9"`) || !strings.Contains(stderr, "--python") {
		t.Errorf("missing interpreter: exit %d, stderr %q", code, stderr)
	}
}

// httpGetHost is GET url with the Host header host.
func httpGetHost(t *testing.T, url, host string) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPAllowedHosts: the daemon's endpoint answers its own addresses,
// localhost and --http-allowed-hosts, refuses other Host names (DNS
// rebinding) with 421, and warns when it listens on all interfaces.
func TestHTTPAllowedHosts(t *testing.T) {
	p := startAtpd(t, "hosts", noPythonEnv(t), "--http", "127.0.0.1:0", "--http-allowed-hosts", "atpd.example.org", "--poll-interval", "20ms")
	line := p.waitLine(`ATPD: serving the task pages.*http_addr=`, startTimeout)
	addr := regexp.MustCompile(`http_addr=(\S+)`).FindStringSubmatch(line)[1]
	for host, want := range map[string]int{
		addr: 200, "localhost": 200, "atpd.example.org": 200,
		"rebind.attacker.example": http.StatusMisdirectedRequest,
	} {
		for _, path := range []string{"/api/queue", "/tasks"} {
			if got := httpGetHost(t, "http://"+addr+path, host); got != want {
				t.Errorf("Host %s %s: %d, want %d", host, path, got, want)
			}
		}
	}
	if len(p.Grep("all interfaces")) != 0 {
		t.Errorf("a daemon bound to 127.0.0.1 warns about all interfaces")
	}
	p.signal(syscall.SIGINT)
	p.wait(exitTimeout)

	all := startAtpd(t, "all-interfaces", noPythonEnv(t), "--http", "0.0.0.0:0", "--poll-interval", "20ms")
	all.waitLine(`WARN.*HTTP endpoint listens on all interfaces`, startTimeout)
	all.signal(syscall.SIGINT)
	all.wait(exitTimeout)

	code, _, stderr := runBin(t, nil, "", "--http", "127.0.0.1:0", "--http-allowed-hosts", "bad host/")
	if code != 2 || !strings.Contains(stderr, "http_allowed_hosts") {
		t.Errorf("bad --http-allowed-hosts: exit %d, stderr %q", code, stderr)
	}
}

// TestValidation: out-of-range numbers are refused up front, in one line
// with exit status 2, identically on PostgreSQL and SQLite, and nothing
// is written.
func TestValidation(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"register", "T", "a.b", "--timeout", "NaN"}, "timeout NaN is not a number of seconds"},
		{[]string{"register", "T", "a.b", "--timeout", "1e300"}, "timeout 1e+300 is not a number of seconds"},
		{[]string{"register", "T", "a.b", "--timeret", "-Inf"}, "timeret -Inf is not a number of seconds"},
		{[]string{"register", "T", "a.b", "--maxrestart", "99999999999"}, "maxrestart 99999999999 is more than 2147483646"},
		{[]string{"enqueue", "T", "x", "--wait", "--wait-timeout", "-1s"}, "--wait-timeout -1s is negative"},
		{[]string{"tasks", "--limit", "-1"}, "--limit -1 is negative"},
	}
	stderrs := map[string][]string{}
	for _, k := range bothDBs {
		t.Run(k.name, func(t *testing.T) {
			db := newE2EDB(t, k)
			for _, tc := range cases {
				code, stdout, stderr := runBin(t, nil, "", append(tc.args, db.dbArgs()...)...)
				if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 2 || stdout != "" {
					t.Errorf("atpd %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.want)
				}
				stderrs[strings.Join(tc.args, " ")] = append(stderrs[strings.Join(tc.args, " ")], stderr)
			}
			if n := db.count("processes_type"); n != 0 {
				t.Errorf("refused commands left %d types", n)
			}
			// Retention "forever" says so.
			code, stdout, _ := runBin(t, nil, "", append([]string{"register", "T", "a.b", "--timeret", "0"}, db.dbArgs()...)...)
			if code != 0 || !regexp.MustCompile(`T\s+a\.b\s+3600s\s+forever\s+3`).MatchString(stdout) {
				t.Errorf("register --timeret 0: exit %d\n%s", code, stdout)
			}
		})
	}
	for cmd, errs := range stderrs {
		if len(errs) == 2 && errs[0] != errs[1] {
			t.Errorf("atpd %s: PostgreSQL says %q, SQLite %q", cmd, errs[0], errs[1])
		}
	}
	for _, n := range []string{"0", "-1", "4097"} {
		code, _, stderr := runBin(t, nil, "", "-n", n)
		if code != 2 || !strings.Contains(stderr, "workers: "+n+" is not between 1 and 4096") {
			t.Errorf("-n %s: exit %d, stderr %q", n, code, stderr)
		}
	}
	code, _, stderr := runBin(t, append(baseEnv(), "ATPD_WORKERS=0"), "")
	if code != 1 || !strings.Contains(stderr, "workers: 0 is not between 1 and 4096") {
		t.Errorf("ATPD_WORKERS=0 (a configuration error, not usage): exit %d, stderr %q", code, stderr)
	}
	_, stdout, _ := runBin(t, nil, "", "--help")
	if line := regexp.MustCompile(`.*--workers.*`).FindString(stdout); !strings.Contains(line, "number of CPUs") || regexp.MustCompile(`\(default \d`).MatchString(line) {
		t.Errorf("-n help: %q", line)
	}
}

// sameAsCLI: the operator commands' --json and the API describe the same
// objects alike, names, types and values, for the finished task
// SequenceSum::web<1> and the type Registered of TestDaemonHTTP; an
// unknown type is an error in both.
func sameAsCLI(t *testing.T, base string, dbArgs []string) {
	t.Helper()
	apiDoc := func(path string) any {
		t.Helper()
		code, body := httpGet(t, base+path)
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %s (%v)", path, code, body, err)
		}
		return v
	}
	cliDoc := func(args ...string) any {
		t.Helper()
		code, stdout, stderr := runBin(t, nil, "", append(append(args, "--json"), dbArgs...)...)
		var v any
		if err := json.Unmarshal([]byte(stdout), &v); err != nil || code != 0 {
			t.Fatalf("atpd %s --json: exit %d, %s%s (%v)", strings.Join(args, " "), code, stdout, stderr, err)
		}
		return v
	}
	// sub: every member of cli is in api with the same value (the API
	// adds its links, the detail its log and input).
	var sub func(where string, cli, api any)
	sub = func(where string, cli, api any) {
		switch c := cli.(type) {
		case map[string]any:
			a, ok := api.(map[string]any)
			if !ok {
				t.Errorf("%s: the command gives an object, the API %T", where, api)
				return
			}
			for k, v := range c {
				av, ok := a[k]
				if !ok {
					t.Errorf("%s: the command's %q is not in the API's document (%v)", where, k, a)
					continue
				}
				if k == "oldest_age_seconds" {
					continue // measured at different moments
				}
				sub(where+"."+k, v, av)
			}
		case []any:
			a, ok := api.([]any)
			if !ok || len(a) != len(c) {
				t.Errorf("%s: the command gives %d items, the API %v", where, len(c), api)
				return
			}
			for i := range c {
				sub(fmt.Sprintf("%s[%d]", where, i), c[i], a[i])
			}
		default:
			if fmt.Sprint(cli) != fmt.Sprint(api) {
				t.Errorf("%s: the command says %v, the API %v", where, cli, api)
			}
		}
	}
	const task = "/tasks/SequenceSum/web%3C1%3E"
	sub("status", cliDoc("status", "SequenceSum", "web<1>"), apiDoc("/api"+task))
	sub("log", cliDoc("log", "SequenceSum", "web<1>"), apiDoc("/api"+task+"/log"))
	sub("response", cliDoc("response", "SequenceSum", "web<1>"), apiDoc("/api"+task+"/response"))
	sub("tasks", cliDoc("tasks", "--type", "SequenceSum", "--limit", "1000"), apiDoc("/api/tasks?type=SequenceSum&limit=1000"))
	sub("queue", cliDoc("queue"), apiDoc("/api/queue"))
	types := apiDoc("/api/types").([]any)
	sub("register", cliDoc("register", "Registered", "tools.atp_demo.handler"), types[len(types)-1])

	code, _, stderr := runBin(t, nil, "", append([]string{"tasks", "--type", "NoType", "--json"}, dbArgs...)...)
	apiCode, _ := httpGet(t, base+"/api/tasks?type=NoType")
	if code != 1 || !strings.Contains(stderr, `task type "NoType" is not registered`) || apiCode != http.StatusNotFound {
		t.Errorf("unknown type: the command exits %d (%q), the API answers %d", code, stderr, apiCode)
	}
}
