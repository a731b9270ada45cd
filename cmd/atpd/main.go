// Command atpd is the EOxServer asynchronous task daemon: a drop-in
// replacement for asyncProcServer.py / eoxserver-atpd.py working on the same
// Django tables. `atpd -s SETTINGS -p DIR -n 4` runs the daemon exactly where
// `asyncProcServer.py -s SETTINGS -p DIR -n 4` ran; the sub-commands migrate
// and inspect the database. See `atpd -h`.
package main

import (
	"context"
	"os"

	// Time zones must load on hosts without a zoneinfo database (minimal
	// containers): Django's TIME_ZONE decides how SQLite rows are written.
	_ "time/tzdata"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
