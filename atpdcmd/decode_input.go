package atpdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
)

// maxInputRead bounds what decode-input reads from stdin; the pickle
// package bounds the decompressed size itself.
const maxInputRead = 256 << 20

func (a *app) decodeInputCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "decode-input [--type TYPE --id IDENTIFIER]",
		Short: "Print a task input as JSON",
		Long: `decode-input prints a task's input, a pickled Python object, as JSON.

It reads standard input, either the stored text (base64 of zlib of the
pickle, as in processes_input.input) or a raw pickle, or, with --type and
--id, the input of that task from the database. Python 2 and 3 pickles of
every protocol are understood. Exit status 1 with a one-line reason when the
input cannot be decoded.`,
		RunE: a.runDecodeInput,
	}, cobra.NoArgs)
	c.Flags().String("type", "", "task type identifier (with --id: read the input from the database)")
	c.Flags().String("id", "", "task (instance) identifier")
	c.Flags().Bool("compact", false, "print the JSON on one line")
	return c
}

func (a *app) runDecodeInput(cmd *cobra.Command, _ []string) error {
	typ, _ := cmd.Flags().GetString("type")
	ident, _ := cmd.Flags().GetString("id")
	if (typ == "") != (ident == "") {
		return &usageError{cmd: cmd, err: errors.New("--type and --id go together")}
	}
	var (
		v   any
		err error
	)
	if typ != "" {
		v, err = a.inputFromDatabase(cmd, typ, ident)
	} else {
		v, err = a.inputFromStdin()
	}
	if err != nil {
		return errors.New(oneLine(err.Error()))
	}
	var opts []pickle.JSONOption
	if compact, _ := cmd.Flags().GetBool("compact"); !compact {
		opts = append(opts, pickle.JSONIndent("  "))
	}
	js, err := pickle.ToJSON(v, opts...)
	if err != nil {
		return fmt.Errorf("decode-input: cannot write the input as JSON: %s", oneLine(err.Error()))
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", js)
	return err
}

func (a *app) inputFromStdin() (any, error) {
	data, err := io.ReadAll(io.LimitReader(a.stdin, maxInputRead+1))
	if err != nil {
		return nil, fmt.Errorf("decode-input: read standard input: %w", err)
	}
	if len(data) > maxInputRead {
		return nil, fmt.Errorf("decode-input: standard input is larger than %d bytes", maxInputRead)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("decode-input: standard input is empty")
	}
	v, err := pickle.DecodeAuto(data)
	if err != nil {
		return nil, fmt.Errorf("decode-input: %w", err)
	}
	return v, nil
}

func (a *app) inputFromDatabase(cmd *cobra.Command, typ, ident string) (any, error) {
	ctx := cmd.Context()
	cfg, _, err := loadConfig(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(cfg.DB, "sqlite:") {
		// Opening a missing SQLite file would create an empty one.
		if _, err := os.Stat(djangodb.SQLitePath(cfg.DB)); err != nil {
			return nil, fmt.Errorf("decode-input: database %s: %w", cfg.DB, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	store, err := openDB(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("decode-input: %w", err)
	}
	defer store.Close()
	inst, err := store.InstanceByIdentifier(ctx, typ, ident)
	if err != nil {
		return nil, fmt.Errorf("decode-input: task %s::%s in %s: %w", typ, ident, store.Describe(), err)
	}
	text, err := store.Input(ctx, inst.ID)
	if err != nil {
		return nil, fmt.Errorf("decode-input: input of task %s::%s (instance %d): %w", typ, ident, inst.ID, err)
	}
	v, err := pickle.Decode(text)
	if err != nil {
		return nil, fmt.Errorf("decode-input: input of task %s::%s (instance %d): %w", typ, ident, inst.ID, err)
	}
	return v, nil
}

// oneLine keeps an error message on the single line the command promises.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(s))
}
