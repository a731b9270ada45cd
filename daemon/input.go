package daemon

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

// checkInputSize fails an input whose decompressed size exceeds max, before
// an executor allocates it; the error wraps executor.ErrInput and
// pickle.ErrTooLarge. Executors bound their own decoding too, but
// each with its own limit and wording; this check gives every executor the
// one configured limit. An input that is not base64 of zlib passes: the
// executor reports what is wrong with it in its own words, as it always
// did.
func checkInputSize(text string, max int64) error {
	if max <= 0 {
		return nil
	}
	// Python's lenient b64decode, as every executor reads the text.
	raw, err := pickle.Unbase64(text)
	if err != nil {
		return nil
	}
	// Most inputs are far too small to inflate past the limit; they cost
	// no decompression at all.
	if int64(len(raw)) <= max/maxDeflateRatio {
		return nil
	}
	r, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(r, max+1))
	if n > max {
		// The executors' own words for an input past their limit, so that
		// the FAILED message does not depend on which limit was lower.
		return fmt.Errorf("%w: pickle: %w: decompressed input exceeds %d bytes (max_input_size)", executor.ErrInput, pickle.ErrTooLarge, max)
	}
	return nil
}
