// Package logfmt owns atpd's log output: a slog.Handler printing the
// reference daemon's line format,
//
//	[0x504DD5AE614D562C] INFO: message key=value ...
//
// so that operators' greps and log scrapers keep working, and the JSON
// alternative (slog's JSON handler carrying the same server id).
//
// The text format has no timestamp, as the reference had none (journald and
// Docker add their own). Messages and values are escaped so that one record
// is always one line: a handler's message cannot forge a line of its own.
package logfmt

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Formats accepted by New.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ServerIDKey is the attribute carrying the server id in JSON records.
const ServerIDKey = "server_id"

// ErrFormat: New was given a format it does not know.
var ErrFormat = errors.New("unknown log format")

// Options configure both handlers.
type Options struct {
	// Level is the minimum level logged; nil means INFO.
	Level slog.Leveler
	// ServerID is the daemon's id as printed ("0x504DD5AE614D562C"); it
	// prefixes every text line and is the server_id attribute in JSON.
	// Empty for commands that are not a daemon: the text prefix is omitted.
	ServerID string
}

// New returns the handler for format ("text" or "json").
func New(w io.Writer, format string, opts Options) (slog.Handler, error) {
	switch format {
	case FormatText, "":
		return NewText(w, opts), nil
	case FormatJSON:
		return NewJSON(w, opts), nil
	}
	return nil, fmt.Errorf("logfmt: %q: %w (want text or json)", format, ErrFormat)
}

// LevelName returns the reference daemon's name for a level: DEBUG, INFO,
// WARNING or ERROR; levels in between take the name below them.
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARNING"
	}
	return "ERROR"
}

// NewJSON returns slog's JSON handler with the server id attribute and the
// level names of the text format.
func NewJSON(w io.Writer, opts Options) slog.Handler {
	h := slog.Handler(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: opts.Level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String(slog.LevelKey, LevelName(l))
				}
			}
			return a
		},
	}))
	if opts.ServerID != "" {
		h = h.WithAttrs([]slog.Attr{slog.String(ServerIDKey, opts.ServerID)})
	}
	return h
}

// TextHandler prints records in the reference daemon's format. It is safe
// for concurrent use; handlers derived with WithAttrs and WithGroup share
// the writer's lock, and each record is written with one Write call.
type TextHandler struct {
	w      io.Writer
	mu     *sync.Mutex
	level  slog.Leveler
	prefix string // "[0x...] " or ""
	attrs  []byte // preformatted " key=value" of WithAttrs
	group  string // "a.b." of WithGroup, prefixed to later keys
}

// NewText returns a TextHandler writing to w.
func NewText(w io.Writer, opts Options) *TextHandler {
	h := &TextHandler{w: w, mu: &sync.Mutex{}, level: opts.Level}
	if h.level == nil {
		h.level = slog.LevelInfo
	}
	if opts.ServerID != "" {
		h.prefix = "[" + opts.ServerID + "] "
	}
	return h
}

// Enabled reports whether records at l are printed.
func (h *TextHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle prints one line.
func (h *TextHandler) Handle(_ context.Context, r slog.Record) error {
	buf := make([]byte, 0, 256)
	buf = append(buf, h.prefix...)
	buf = append(buf, LevelName(r.Level)...)
	buf = append(buf, ": "...)
	buf = appendEscaped(buf, r.Message)
	buf = append(buf, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		buf = appendAttr(buf, h.group, a)
		return true
	})
	buf = append(buf, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(buf)
	return err
}

// WithAttrs returns a handler that prints attrs on every line.
func (h *TextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = append([]byte(nil), h.attrs...)
	for _, a := range attrs {
		h2.attrs = appendAttr(h2.attrs, h.group, a)
	}
	return &h2
}

// WithGroup returns a handler that qualifies later keys with name.
func (h *TextHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

func appendAttr(buf []byte, group string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return buf
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return buf
		}
		if a.Key != "" {
			group += a.Key + "."
		}
		for _, ga := range attrs {
			buf = appendAttr(buf, group, ga)
		}
		return buf
	}
	buf = append(buf, ' ')
	buf = appendKey(buf, group+a.Key)
	buf = append(buf, '=')
	return appendValue(buf, a.Value)
}

func appendKey(buf []byte, key string) []byte {
	if key == "" || needsQuote(key) {
		return strconv.AppendQuote(buf, key)
	}
	return append(buf, key...)
}

func appendValue(buf []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendString(buf, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.AppendFloat(buf, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool())
	case slog.KindDuration:
		return append(buf, v.Duration().String()...)
	case slog.KindTime:
		return v.Time().AppendFormat(buf, time.RFC3339Nano)
	}
	switch x := v.Any().(type) {
	case error:
		return appendString(buf, x.Error())
	case encoding.TextMarshaler:
		if t, err := x.MarshalText(); err == nil {
			return appendString(buf, string(t))
		}
	case fmt.Stringer:
		return appendString(buf, x.String())
	case []byte:
		return appendString(buf, string(x))
	}
	return appendString(buf, fmt.Sprint(v.Any()))
}

func appendString(buf []byte, s string) []byte {
	if s == "" || needsQuote(s) {
		return strconv.AppendQuote(buf, s)
	}
	return append(buf, s...)
}

// needsQuote: a value a reader could not split on spaces and '='.
func needsQuote(s string) bool {
	for _, r := range s {
		if r == ' ' || r == '=' || r == '"' || r == '\\' || !unicode.IsPrint(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// appendEscaped keeps the message readable (no quotes) but on one line.
func appendEscaped(buf []byte, s string) []byte {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' }) {
		return append(buf, s...)
	}
	for _, r := range s {
		switch {
		case r == '\n':
			buf = append(buf, `\n`...)
		case r == '\r':
			buf = append(buf, `\r`...)
		case r == '\t':
			buf = append(buf, `\t`...)
		case r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029':
			q := strconv.QuoteRune(r)
			buf = append(buf, q[1:len(q)-1]...)
		default:
			buf = utf8.AppendRune(buf, r)
		}
	}
	return buf
}
