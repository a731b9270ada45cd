package djangodb

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/eoxserver/atpd/compat/zlibpy"
)

// EncodeResponse returns base64(zlib.compress(data)) as tracker.setTaskResponse
// stores it. compress/zlib would write a different (if equally valid)
// stream; zlibpy writes CPython's bytes, so a row atpd stores is the row the
// reference daemon would have stored.
func EncodeResponse(data []byte) string {
	return base64.StdEncoding.EncodeToString(zlibpy.Compress(data))
}

// MaxResponseSize bounds a decoded response so that a corrupt or hostile row
// cannot exhaust memory.
const MaxResponseSize = 1 << 30

// DecodeResponse reverses EncodeResponse, and accepts any valid zlib stream,
// whoever wrote it.
func DecodeResponse(text string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("djangodb: response: bad base64: %w", err)
	}
	r, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("djangodb: response: bad zlib: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("djangodb: response: bad zlib: %w", err)
	}
	if len(data) > MaxResponseSize {
		return nil, fmt.Errorf("djangodb: response: larger than %d bytes", MaxResponseSize)
	}
	return data, nil
}
