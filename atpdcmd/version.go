package atpdcmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/internal/buildinfo"
)

func (a *app) versionCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "version [--json]",
		Short: "Print atpd's version and the commit it was built from",
		Long: `version prints the module version (a tag, a pseudo-version derived from the
commit, or "(devel)"), the VCS revision and its time as the Go toolchain
recorded them at build time, and the Go version. --version on the root
command prints the same line; /metrics serves it as atpd_build_info.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			info := buildinfo.Get()
			if format == formatJSON {
				return writeJSON(a.stdout, info)
			}
			_, err = fmt.Fprintln(a.stdout, info.String())
			return err
		},
	}, cobra.NoArgs)
	addFormatFlags(c, true)
	return c
}
