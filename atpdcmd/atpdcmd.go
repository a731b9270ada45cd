// Package atpdcmd is atpd's command line as a library: the daemon and every
// operator command behind one entry point, Main, so that a deployment can
// build its own atpd with its own Go handlers registered (Caddy's caddycmd
// model). The stock binary, cmd/atpd, is Main and nothing else:
//
//	package main
//
//	import (
//		"context"
//		"os"
//
//		"github.com/eoxserver/atpd/atpdcmd"
//		_ "example.org/myapp/atpdhandlers" // registers "myapp.tasks.reproject" in init
//	)
//
//	func main() { os.Exit(atpdcmd.Main(context.Background(), os.Args[1:])) }
//
// A handler package registers with RegisterHandler (or
// gohandlers.Default.Register) in an init function or before Main runs.
// Every flag, sub-command and behaviour is the stock binary's.
package atpdcmd

import (
	"context"
	"os"

	// Time zones must load on hosts without a zoneinfo database (minimal
	// containers): Django's TIME_ZONE decides how SQLite rows are written.
	_ "time/tzdata"

	"github.com/eoxserver/atpd/gohandlers"
)

// Main runs atpd with args (without the program name) on the process's
// standard streams and returns its exit status.
func Main(ctx context.Context, args []string) int {
	return run(ctx, args, os.Stdin, os.Stdout, os.Stderr)
}

// RegisterHandler makes h the Go handler of the Python dotted path path
// (the handler column of processes_type) in every atpd that Main runs in
// this process. It fails on a path that is not module.function or one
// registered already.
func RegisterHandler(path string, h gohandlers.Handler) error {
	return gohandlers.Default.Register(path, h)
}
