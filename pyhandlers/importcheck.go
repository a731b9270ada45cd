package pyhandlers

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

//go:embed importcheck.py
var importCheckScript string

// importCheckMark starts the line importcheck.py answers on; a module may
// print anything else.
const importCheckMark = "ATPD-IMPORT-CHECK: "

// ImportResult is what importing one handler path gave.
type ImportResult struct {
	Handler string
	// Error is str() of the exception, the message a task of the path
	// would fail with; "" when the path imports and names a callable.
	Error string
	Class string // the exception's class, e.g. ImportError
}

// CheckImports imports each handler path in a CPython process set up as
// the workers are (cfg's interpreter, PythonPath, SettingsModule with
// django.setup(), environment), the way the reference daemon's Importer
// did, and reports what each gave, in the order of paths. It runs no
// handler. The error is for a check that could not run: no interpreter,
// django.setup() failing, ctx ending.
func CheckImports(ctx context.Context, cfg Config, paths []string) (results []ImportResult, version string, err error) {
	cfg = cfg.withDefaults()
	if _, err := exec.LookPath(cfg.Python); err != nil {
		return nil, "", fmt.Errorf("pyhandlers: check imports: python interpreter %q: %w", cfg.Python, err)
	}
	req, err := json.Marshal(map[string]any{"settings": cfg.SettingsModule, "path": cfg.PythonPath, "handlers": paths})
	if err != nil {
		return nil, "", fmt.Errorf("pyhandlers: check imports: %w", err)
	}
	cmd := exec.CommandContext(ctx, cfg.Python, "-c", importCheckScript)
	cmd.Env = cfg.environ()
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	var out struct {
		SetupError string `json:"setup_error"`
		Version    string `json:"version"`
		Results    []struct {
			Handler string `json:"handler"`
			Error   string `json:"error"`
			Class   string `json:"class"`
		} `json:"results"`
	}
	line, found := markedLine(stdout.Bytes())
	if !found {
		reason := lastLine(stderr.String())
		switch {
		case ctx.Err() != nil:
			return nil, "", fmt.Errorf("pyhandlers: check imports with %s: %w", cfg.Python, context.Cause(ctx))
		case runErr != nil:
			return nil, "", fmt.Errorf("pyhandlers: check imports with %s: %w: %s", cfg.Python, runErr, reason)
		}
		return nil, "", fmt.Errorf("pyhandlers: check imports with %s: no answer: %s", cfg.Python, reason)
	}
	if err := json.Unmarshal(line, &out); err != nil {
		return nil, "", fmt.Errorf("pyhandlers: check imports with %s: bad answer: %w", cfg.Python, err)
	}
	if out.SetupError != "" {
		return nil, "", fmt.Errorf("pyhandlers: check imports with %s: %s", cfg.Python, out.SetupError)
	}
	if len(out.Results) != len(paths) {
		return nil, "", fmt.Errorf("pyhandlers: check imports with %s: %d answers for %d paths", cfg.Python, len(out.Results), len(paths))
	}
	results = make([]ImportResult, len(paths))
	for i, r := range out.Results {
		results[i] = ImportResult{Handler: r.Handler, Error: r.Error, Class: r.Class}
	}
	return results, out.Version, nil
}

// markedLine returns the rest of the last line of b that starts with
// importCheckMark.
func markedLine(b []byte) ([]byte, bool) {
	var found []byte
	ok := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if rest, has := bytes.CutPrefix(sc.Bytes(), []byte(importCheckMark)); has {
			found, ok = append(found[:0], rest...), true
		}
	}
	return found, ok
}

// lastLine is the last non-empty line of s, for an error message.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
