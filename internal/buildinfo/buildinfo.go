// Package buildinfo says which atpd this is: the module version and the
// VCS revision the Go toolchain stamped into the binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info describes the running binary. Fields the build did not record are
// "unknown" (Revision, Time) or false (Modified).
type Info struct {
	// Version is the main module's version: a tag (v1.2.3), a
	// pseudo-version derived from the commit, or "(devel)".
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from.
	Revision string `json:"revision"`
	// Time is the commit's time (RFC 3339).
	Time string `json:"time"`
	// Modified reports uncommitted changes in the work tree at build time.
	Modified bool `json:"modified"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// Get reads the build information of the running binary.
func Get() Info {
	info := Info{Version: "(devel)", Revision: "unknown", Time: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line `atpd version` prints.
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += "+modified"
	}
	return fmt.Sprintf("atpd %s (revision %s, %s, %s %s/%s)", i.Version, rev, i.Time, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}
