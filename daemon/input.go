package daemon

import (
	"fmt"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// checkInputSize fails an input whose decompressed size exceeds max, before
// an executor allocates it; the error wraps executor.ErrInput and
// pickle.ErrTooLarge. Executors bound their own decoding too, but
// each with its own limit and wording; this check gives every executor the
// one configured limit. An input that is not base64 of zlib passes: the
// executor reports what is wrong with it in its own words, as it always
// did.
func checkInputSize(text string, max int64) error {
	if max <= 0 || !pickle.InflatesPast(text, max) {
		return nil
	}
	// The executors' own words for an input past their limit, so that
	// the FAILED message does not depend on which limit was lower.
	return fmt.Errorf("%w: pickle: %w: decompressed input exceeds %d bytes (max_input_size)", executor.ErrInput, pickle.ErrTooLarge, max)
}
