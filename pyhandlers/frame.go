package pyhandlers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The worker protocol (see worker.py for the message table): a frame is a
// 4-byte big-endian payload length and the payload; a payload is one kind
// byte and fields, each a 4-byte big-endian length and its bytes.

// Message kinds.
const (
	kindInit      = 'I' // atpd -> worker: nonce, settings module, sys.path entries
	kindTask      = 'T' // atpd -> worker: seq, instance id, type, identifier, handler, has_input, pickle
	kindReplyOK   = 'r' // atpd -> worker: call results
	kindReplyErr  = 'e' // atpd -> worker: error message
	kindHello     = 'H' // worker -> atpd: python version, pid
	kindFatal     = 'F' // worker -> atpd: start-up failure message, traceback
	kindCall      = 'C' // worker -> atpd: method, arguments
	kindDone      = 'D' // worker -> atpd: stdout sync ok, stderr sync ok
	kindException = 'X' // worker -> atpd: str(e), class name, traceback, stdout ok, stderr ok
)

// maxFields bounds how many fields a message may have; the largest message
// has seven.
const maxFields = 64

var errFrameTooLarge = errors.New("frame too large")

// message is one decoded payload.
type message struct {
	kind   byte
	fields [][]byte
}

// readFrame reads one frame's payload, refusing frames above max bytes
// before allocating them. io.EOF means the peer closed the pipe between
// frames; a pipe closed inside a frame is io.ErrUnexpectedEOF.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n == 0 {
		return nil, fmt.Errorf("empty frame")
	}
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, max)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return payload, nil
}

// decodeMessage splits a payload into its kind and fields. The fields alias
// the payload.
func decodeMessage(payload []byte) (message, error) {
	if len(payload) == 0 {
		return message{}, fmt.Errorf("empty payload")
	}
	m := message{kind: payload[0]}
	rest := payload[1:]
	for len(rest) > 0 {
		if len(m.fields) == maxFields {
			return message{}, fmt.Errorf("more than %d fields", maxFields)
		}
		if len(rest) < 4 {
			return message{}, fmt.Errorf("truncated field header")
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return message{}, fmt.Errorf("field of %d bytes with %d left", n, len(rest))
		}
		m.fields = append(m.fields, rest[:n:n])
		rest = rest[n:]
	}
	return m, nil
}

// encodeFrame returns the frame of a message.
func encodeFrame(kind byte, fields ...[]byte) []byte {
	size := 1
	for _, f := range fields {
		size += 4 + len(f)
	}
	buf := make([]byte, 4, 4+size)
	binary.BigEndian.PutUint32(buf, uint32(size))
	buf = append(buf, kind)
	for _, f := range fields {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(f)))
		buf = append(buf, f...)
	}
	return buf
}
