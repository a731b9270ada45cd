package atpdcmd

import (
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/daemon"
)

// TestDaemonConfigFromFlags: the operator's knobs reach the daemon's
// configuration, from flags and from the environment, and atpd's defaults
// are the daemon's own.
func TestDaemonConfigFromFlags(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want func(daemon.Config) bool
		what string
	}{
		{"defaults", nil, nil, func(c daemon.Config) bool {
			return !c.SyncTaskWrites && !c.NoListen && c.FlushDelay == daemon.DefaultFlushDelay
		}, "SyncTaskWrites false, NoListen false, FlushDelay the daemon's default"},
		{"--sync-task-writes", nil, []string{"--sync-task-writes"}, func(c daemon.Config) bool { return c.SyncTaskWrites }, "SyncTaskWrites true"},
		{"--listen=false", nil, []string{"--listen=false"}, func(c daemon.Config) bool { return c.NoListen }, "NoListen true"},
		{"ATPD_LISTEN=false", map[string]string{"ATPD_LISTEN": "false"}, nil, func(c daemon.Config) bool { return c.NoListen }, "NoListen true"},
		{"--listen over ATPD_LISTEN", map[string]string{"ATPD_LISTEN": "false"}, []string{"--listen"}, func(c daemon.Config) bool { return !c.NoListen }, "NoListen false"},
		{"--flush-delay", nil, []string{"--flush-delay", "5ms"}, func(c daemon.Config) bool { return c.FlushDelay == 5*time.Millisecond }, "FlushDelay 5ms"},
		{"ATPD_FLUSH_DELAY in seconds", map[string]string{"ATPD_FLUSH_DELAY": "0.25"}, nil, func(c daemon.Config) bool { return c.FlushDelay == 250*time.Millisecond }, "FlushDelay 250ms"},
		{"ATPD_SYNC_TASK_WRITES", map[string]string{"ATPD_SYNC_TASK_WRITES": "1"}, nil, func(c daemon.Config) bool { return c.SyncTaskWrites }, "SyncTaskWrites true"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			for _, k := range config.Keys() {
				t.Setenv(config.EnvPrefix+"_"+strings.ToUpper(k), "")
			}
			t.Setenv(config.EnvConfig, "")
			t.Setenv(config.EnvDjangoSettings, "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			root := (&app{}).rootCommand()
			if err := root.ParseFlags(tc.args); err != nil {
				t.Fatalf("parse %q: %v", tc.args, err)
			}
			cfg, err := config.Load(root.Flags())
			if err != nil {
				t.Fatalf("load %q: %v", tc.args, err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("validate %q: %v", tc.args, err)
			}
			dc := daemonConfig(cfg, daemon.NewServerID(), nil, nil)
			if err := dc.Validate(); err != nil {
				t.Fatalf("daemon config from %q: %v", tc.args, err)
			}
			if !tc.want(dc) {
				t.Errorf("args %q env %v: daemon config %+v, want %s", tc.args, tc.env, dc, tc.what)
			}
		})
	}
}

// TestDefaultsAgree: the defaults atpd documents (config) are the ones the
// daemon applies to zero values, so that -h and the sample file tell the
// truth.
func TestDefaultsAgree(t *testing.T) {
	for _, c := range []struct {
		name         string
		atpd, daemon time.Duration
	}{
		{"poll_interval", config.DefaultPollInterval, daemon.DefaultPollInterval},
		{"sweep_interval", config.DefaultSweepInterval, daemon.DefaultSweepInterval},
		{"flush_delay", config.DefaultFlushDelay, daemon.DefaultFlushDelay},
	} {
		if c.atpd != c.daemon {
			t.Errorf("%s: config default %v, daemon default %v", c.name, c.atpd, c.daemon)
		}
	}
	if config.DefaultMaxInputSize != daemon.DefaultMaxInputSize {
		t.Errorf("max_input_size: config default %d, daemon default %d", config.DefaultMaxInputSize, daemon.DefaultMaxInputSize)
	}
}
