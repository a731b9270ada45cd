package atpdcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/eoxserver/atpd/compat/pickle"
)

// maxJSONDepth bounds nesting so that a hostile document cannot exhaust
// the stack; Python's json module stops near the same depth.
const maxJSONDepth = 1000

// jsonToPython parses a JSON document into the Go values package pickle
// writes as the Python values json.loads would return: objects become
// dicts in document order (the last of duplicate keys wins, in the first
// key's place), arrays lists, integers int (arbitrarily large), numbers
// with a fraction or exponent float, strings str, null None.
func jsonToPython(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := jsonValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("json input: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return nil, fmt.Errorf("json input: after the value: %w", err)
	}
	return v, nil
}

// eofText says what a bare io.EOF means inside a document: it ended too
// early.
func eofText(err error) error {
	if err == io.EOF {
		return errors.New("unexpected end of the document")
	}
	return err
}

func jsonValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		if depth > 0 {
			return nil, errors.New("unexpected end of the document")
		}
		return nil, errors.New("empty document")
	}
	if err != nil {
		return nil, eofText(err)
	}
	switch t := tok.(type) {
	case nil, bool, string:
		return t, nil
	case json.Number:
		return jsonNumber(t)
	case json.Delim:
		switch t {
		case '[':
			list := []any{}
			for dec.More() {
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token() // ']'
			return list, eofText(err)
		case '{':
			d := pickle.NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, eofText(err)
				}
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				// String keys are always hashable.
				_ = d.Set(k.(string), v)
			}
			_, err := dec.Token() // '}'
			return d, eofText(err)
		}
	}
	return nil, fmt.Errorf("unexpected %v", tok)
}

func jsonNumber(n json.Number) (any, error) {
	s := n.String()
	if strings.ContainsAny(s, ".eE") {
		// Python's float() of the same text: out of range becomes inf.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("number %s: %w", s, err)
		}
		return f, nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("number %s is not an integer", s)
	}
	return b, nil
}
