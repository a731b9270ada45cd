package pyhandlers

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// maxDeflateRatio is the most DEFLATE can expand: 258 bytes from a match
// coded in about two bits, so at most 1032 output bytes per input byte.
const maxDeflateRatio = 1032

// checkInput refuses a stored input whose text, or whose decompressed
// pickle, is larger than max bytes, so that a corrupt or hostile row
// cannot exhaust a worker's memory (the reference daemon had no limit).
// Everything else goes to the worker as the stored text: it decodes it as
// tracker.startTask did, pickle.loads(zlib.decompress(base64.b64decode(
// text))), so that an input that does not decode fails with Python's own
// words. Most inputs are too small to inflate past max and cost no
// decompression here.
func checkInput(text string, max int) error {
	tooLarge := func() error {
		return executor.NewInputError(fmt.Errorf("pickle: %w: decompressed input exceeds %d bytes", pickle.ErrTooLarge, max))
	}
	if len(text) > max {
		return tooLarge()
	}
	raw, err := pickle.Unbase64(text)
	if err != nil || len(raw) <= max/maxDeflateRatio {
		return nil // the worker reports what is wrong with it
	}
	r, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	defer r.Close()
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, int64(max)+1)); n > int64(max) {
		return tooLarge()
	}
	return nil
}
