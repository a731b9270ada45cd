// Command atpd is the EOxServer asynchronous task daemon: a drop-in
// replacement for asyncProcServer.py / eoxserver-atpd.py working on the same
// Django tables. `atpd -s SETTINGS -p DIR -n 4` runs the daemon exactly where
// `asyncProcServer.py -s SETTINGS -p DIR -n 4` ran; the sub-commands migrate
// and inspect the database. See `atpd -h`. The command line lives in
// package atpdcmd, so that a deployment can build its own atpd with its
// own Go handlers.
package main

import (
	"context"
	"os"

	"github.com/eoxserver/atpd/atpdcmd"
)

func main() {
	os.Exit(atpdcmd.Main(context.Background(), os.Args[1:]))
}
