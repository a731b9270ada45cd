// Command atpd is atpd with the example's Go handler registered: the stock
// command line (atpdcmd.Main), one import more.
package main

import (
	"context"
	"os"

	"github.com/eoxserver/atpd/atpdcmd"

	_ "github.com/eoxserver/atpd/examples/gohandler/reproject"
)

func main() {
	os.Exit(atpdcmd.Main(context.Background(), os.Args[1:]))
}
