package pyhandlers

import (
	"fmt"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// decodeInput turns the stored input text, base64(zlib(pickle)), into the
// pickle bytes for Python's own pickle, refusing more than max decompressed
// bytes so that a corrupt or hostile row cannot exhaust memory. The envelope
// is undone by compat/pickle, as for Go handlers, so a broken input fails
// with the same message whichever executor the path is routed to; that
// message is the task's FAILED log record and names the broken layer.
func decodeInput(text string, max int) ([]byte, error) {
	p, err := pickle.DecodeOptions{MaxSize: max}.Unwrap(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", executor.ErrInput, err)
	}
	return p, nil
}
