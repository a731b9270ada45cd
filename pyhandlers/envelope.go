package pyhandlers

import (
	"fmt"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// checkInput refuses a stored input whose text, or whose decompressed
// pickle, is larger than max bytes, so that a corrupt or hostile row
// cannot exhaust a worker's memory (the reference daemon had no limit).
// Everything else goes to the worker as the stored text: it decodes it as
// tracker.startTask did, pickle.loads(zlib.decompress(base64.b64decode(
// text))), so that an input that does not decode fails with Python's own
// words.
func checkInput(text string, max int) error {
	if len(text) > max || pickle.InflatesPast(text, int64(max)) {
		return executor.NewInputError(fmt.Errorf("pickle: %w: decompressed input exceeds %d bytes", pickle.ErrTooLarge, max))
	}
	return nil
}
