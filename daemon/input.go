package daemon

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

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
	raw, ok := lenientBase64(text)
	if !ok {
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

// lenientBase64 decodes the stored text as Python's b64decode did for
// tracker.startTask: characters outside the alphabet (newlines from
// base64.encodestring) are dropped, and a b'...' wrapper (a Python 3
// producer storing bytes in a TextField) is removed.
func lenientBase64(text string) ([]byte, bool) {
	t := strings.TrimSpace(text)
	if len(t) >= 3 && t[0] == 'b' && (t[1] == '\'' || t[1] == '"') && t[len(t)-1] == t[1] {
		t = t[2 : len(t)-1]
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '+', r == '/', r == '=':
			return r
		}
		return -1
	}, t)
	raw, err := base64.StdEncoding.DecodeString(clean)
	if err != nil || len(raw) == 0 {
		return nil, false
	}
	return raw, true
}
