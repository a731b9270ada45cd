// Package deploy holds atpd's deployment files (the systemd unit and the
// sample configuration); its tests keep them consistent with the code.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/config"
)

// TestSampleConfigLoads: the sample is a valid configuration, with the
// values it claims, and documents every key the configuration knows.
func TestSampleConfigLoads(t *testing.T) {
	for _, k := range config.Keys() {
		t.Setenv(config.EnvPrefix+"_"+strings.ToUpper(k), "")
	}
	t.Setenv(config.EnvDjangoSettings, "")
	t.Setenv(config.EnvConfig, "atpd.yaml")
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatalf("load atpd.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("atpd.yaml: %v", err)
	}
	if cfg.Settings != "myinstance.settings" || cfg.Workers != 4 || cfg.DrainTimeout != 5*time.Minute ||
		cfg.HTTPAddr != "127.0.0.1:9090" || len(cfg.PythonPath) != 1 || cfg.Source(config.KeyWorkers) != config.SourceFile {
		t.Errorf("atpd.yaml loads as %+v", cfg)
	}

	sample, err := os.ReadFile("atpd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys() {
		if !regexp.MustCompile(`(?m)^#?` + regexp.QuoteMeta(k) + `:`).Match(sample) {
			t.Errorf("atpd.yaml does not document the key %s", k)
		}
	}
}

// TestSampleConfigFlags: the sample's header names the flag of every key
// whose flag is not the key's words joined by dashes.
func TestSampleConfigFlags(t *testing.T) {
	sample, err := os.ReadFile("atpd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(string(sample), "\n\n")
	header = strings.ReplaceAll(header, "\n# ", " ")
	for _, k := range config.Keys() {
		flag := config.FlagName(k)
		if flag == "" {
			t.Errorf("key %s has no flag", k)
			continue
		}
		if flag != strings.ReplaceAll(k, "_", "-") && !strings.Contains(header, k+" is --"+flag) && !strings.Contains(header, k+" --"+flag) {
			t.Errorf("atpd.yaml's header does not say that %s is --%s", k, flag)
		}
	}
}

// TestUnitDocumentation: every file the unit's Documentation= names is
// installed by the unit's install instructions, from a file of the
// repository.
func TestUnitDocumentation(t *testing.T) {
	body, err := os.ReadFile("atpd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range unitSettings(t, "atpd.service")["Documentation"] {
		for _, uri := range strings.Fields(doc) {
			path, ok := strings.CutPrefix(uri, "file://")
			if !ok {
				continue
			}
			m := regexp.MustCompile(`(?m)^#\s+install .*\s(\S+)\s+` + regexp.QuoteMeta(path) + `$`).FindSubmatch(body)
			if m == nil {
				t.Errorf("Documentation=%s: no install line puts a file there", uri)
				continue
			}
			if _, err := os.Stat(filepath.Join("..", string(m[1]))); err != nil {
				t.Errorf("Documentation=%s is installed from %s: %v", uri, m[1], err)
			}
		}
	}
}

// unitSettings reads the Key=Value lines of a unit file.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: line %q is not Key=Value", path, line)
			continue
		}
		out[k] = append(out[k], v)
	}
	return out
}

// TestUnit: the unit stops atpd by draining, gives the drain the time the
// sample configuration asks for, and passes systemd's own check.
func TestUnit(t *testing.T) {
	u := unitSettings(t, "atpd.service")
	for k, want := range map[string]string{
		"KillSignal": "SIGINT",
		"KillMode":   "mixed",
		"Restart":    "on-failure",
		"User":       "atpd",
		"ExecStart":  "/usr/local/bin/atpd --config /etc/atpd/atpd.yaml",
	} {
		if got := u[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	stop, err := time.ParseDuration(strings.ReplaceAll(u["TimeoutStopSec"][0], "min", "m"))
	if err != nil {
		t.Fatalf("TimeoutStopSec=%v: %v", u["TimeoutStopSec"], err)
	}
	t.Setenv(config.EnvConfig, "atpd.yaml")
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The abort after the drain needs a few seconds to write re-enqueues.
	if stop < cfg.DrainTimeout+30*time.Second {
		t.Errorf("TimeoutStopSec %v leaves too little beyond drain_timeout %v", stop, cfg.DrainTimeout)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; the unit's syntax is not checked")
	}
	// verify insists that ExecStart exists; point it at one that does.
	body, err := os.ReadFile("atpd.service")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "atpd.service")
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(string(body), "/usr/local/bin/atpd", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
