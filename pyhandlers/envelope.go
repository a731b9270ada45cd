package pyhandlers

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// decodeInput turns the stored input text, base64(zlib(pickle)), into the
// pickle bytes, refusing more than max decompressed bytes so that a corrupt
// or hostile row cannot exhaust memory. The error text is what the task's
// FAILED log record says, so it names the layer that is broken.
func decodeInput(text string, max int) ([]byte, error) {
	// Python's b64decode (what tracker.startTask used) drops characters
	// outside the alphabet, such as the newlines base64.encodestring put in.
	clean := strings.Map(func(r rune) rune {
		switch {
		case 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '+', r == '/', r == '=':
			return r
		}
		return -1
	}, text)
	raw, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("input: bad base64: %w", err)
	}
	if len(raw) == 0 {
		return nil, errors.New("input: empty")
	}
	r, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("input: bad zlib data: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("input: bad zlib data: %w", err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("input: more than %d bytes after decompression", max)
	}
	return data, nil
}
