package reliability

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
)

// stored returns the stored form of raw pickle bytes: base64(zlib(raw)).
func stored(t *testing.T, raw []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// truncatedZlib returns the first half of a stored input, cut at a base64
// quantum so that only the zlib stream is broken.
func truncatedZlib(t *testing.T) string {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 300)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	s := stored(t, raw)
	return s[:len(s)/2&^3]
}

// zlibBomb returns the stored form of size zero bytes: about a thousandth
// of size once compressed.
func zlibBomb(t *testing.T, size int) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= len(zeros) {
		w.Write(zeros[:min(left, len(zeros))])
	}
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// deepPickle nests depth lists in one another: ]]]...aaa. (protocol 2),
// built by CPython's unpickler without recursion.
func deepPickle(depth int) []byte {
	p := []byte{0x80, 2}
	p = append(p, bytes.Repeat([]byte{']'}, depth)...)
	p = append(p, bytes.Repeat([]byte{'a'}, depth-1)...)
	return append(p, '.')
}

// hugeLength declares a BINBYTES8 of 2^60 bytes and holds four.
func hugeLength() []byte {
	p := []byte{0x80, 4, 0x8e}
	p = binary.LittleEndian.AppendUint64(p, 1<<60)
	return append(p, "abcd."...)
}

// hugeUnicode declares a BINUNICODE of 2 GiB - 1 and holds four bytes.
func hugeUnicode() []byte {
	p := []byte{0x80, 2, 'X'}
	p = binary.LittleEndian.AppendUint32(p, 1<<31-1)
	return append(p, "abcd."...)
}

// TestBadInput feeds the real daemon inputs no producer would write, through
// the Go executor (the demo handler's Go port) and through CPython workers
// (the ledger handler), plus task types with no usable handler path. Each
// task ends FAILED with a message that says what is wrong; no handler sees
// such an input (the ledger stays empty); the daemon keeps running the
// tasks after them and exits cleanly.
func TestBadInput(t *testing.T) {
	const maxInput = 1 << 20
	db := newDB(t, pgUTC)
	led := newLedger(t)
	db.register("GoBad", "tools.atp_demo.handler", 60, 0)
	db.register("PyBad", ledgerHandler, 60, 0)
	valid, err := pickle.Encode([]any{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	truncated, err := pickle.Pickle([]any{1, 2, 3, "four"})
	if err != nil {
		t.Fatal(err)
	}
	truncated = truncated[:len(truncated)-4]

	type input struct {
		name string
		text string // stored input; "-" deletes the input row
		// Messages by executor; "" means the case does not apply.
		goMsg, pyMsg string
		unstarted    bool // base64, zlib or the row: the claim fails it
	}
	inputs := []input{
		// Python's words (Django, binascii, zlib), as the reference wrote them,
		// from the Go decoder and from the CPython worker alike.
		{"empty", "", `^Error -5 while decompressing data: incomplete or truncated stream$`, `^Error -5 while decompressing data: incomplete or truncated stream$`, true},
		{"missing", "-", `^Input matching query does not exist\.$`, `^Input matching query does not exist\.$`, true},
		{"not-base64", "this is not base64!", `^Incorrect padding$`, `^Incorrect padding$`, true},
		{"not-zlib", base64.StdEncoding.EncodeToString([]byte("plain text, not zlib")), `^Error -3 while decompressing data: incorrect header check$`, `^Error -3 while decompressing data: incorrect header check$`, true},
		{"truncated-zlib", truncatedZlib(t), `^Error -5 while decompressing data: incomplete or truncated stream$`, `^Error -5 while decompressing data: incomplete or truncated stream$`, true},
		// A pickle the Go demo cannot read goes to the Python demo (the
		// router's fall-through), which fails it as the reference did.
		{"truncated-pickle", stored(t, truncated), `^pickle data was truncated$`, `^pickle data was truncated$`, false},
		{"deep-100000", stored(t, deepPickle(100000)), `^float\(\) argument must be a string or a real number, not 'list'$`, `^list indices must be integers`, false},
		{"huge-bytes8", stored(t, hugeLength()), `^input: cannot unpickle: MemoryError$`, `^input: cannot unpickle: MemoryError$`, false},
		{"huge-unicode", stored(t, hugeUnicode()), `^pickle data was truncated$`, `^pickle data was truncated$`, false},
		{"zlib-bomb", zlibBomb(t, 256<<20), `^cannot decode input: pickle: pickle too large: decompressed input exceeds 1048576 bytes \(max_input_size\)$`, `^cannot decode input: pickle: pickle too large: decompressed input exceeds 1048576 bytes \(max_input_size\)$`, false},
	}
	type want struct {
		typ, ident string
		msg        *regexp.Regexp
		unstarted  bool // the claim fails it before RUNNING, as startTask did
	}
	var wants []want
	for _, in := range inputs {
		for _, ex := range []struct{ typ, msg string }{{"GoBad", in.goMsg}, {"PyBad", in.pyMsg}} {
			if ex.msg == "" {
				continue
			}
			text := in.text
			if text == "-" {
				text = valid
			}
			db.bulkEnqueue(ex.typ, in.name, 1, text)
			if in.text == "-" {
				db.Exec(`DELETE FROM processes_input WHERE instance_id = ?`, db.instanceID(ex.typ, in.name+"1"))
			}
			wants = append(wants, want{ex.typ, in.name + "1", regexp.MustCompile(ex.msg), in.unstarted})
		}
	}
	// Task types whose handler path names nothing that can be imported.
	for _, h := range []struct{ typ, path, msg string }{
		// The reference's Importer: rpartition("."), then __import__.
		{"EmptyPath", "", `^Empty module name$`},
		{"Spaces", "not a path!", `^Empty module name$`},
		{"Dots", "..", `^No module named '\.'$`},
		{"NoModule", "no_such_module.handler", `No module named 'no_such_module'`},
	} {
		db.Exec(`INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret) VALUES (?, ?, 1, 60, -1)`, h.typ, h.path)
		db.bulkEnqueue(h.typ, "h", 1, valid)
		wants = append(wants, want{h.typ, "h1", regexp.MustCompile(h.msg), false})
	}
	bad := len(wants)
	db.bulkEnqueue("GoBad", "after", 1, valid)
	db.bulkEnqueue("PyBad", "after", 1, led.input(0))

	a := db.startAtpd("atpd", "atpd", "-n", "2", "--max-input-size", fmt.Sprint(maxInput))
	db.waitTerminal(bad+2, 2*time.Minute)
	rss, _ := a.rss()
	a.Stop(drainTimeout)

	logs := db.logs()
	for _, w := range wants {
		recs := logs[db.instanceID(w.typ, w.ident)]
		want := []djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Failed}
		if w.unstarted {
			want = slices.Delete(want, 2, 3)
		}
		var got []djangodb.Status
		for _, r := range recs {
			got = append(got, r.Status)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s::%s: log %v, want %v", w.typ, w.ident, recs, want)
			continue
		}
		msg := recs[len(recs)-1].Message
		t.Logf("%s::%s FAILED: %.200s", w.typ, w.ident, msg)
		if !w.msg.MatchString(msg) {
			t.Errorf("%s::%s FAILED with %q, want a match of %s", w.typ, w.ident, msg, w.msg)
		}
	}
	for _, typ := range []string{"GoBad", "PyBad"} {
		if s := db.QueryInt(`SELECT status FROM processes_instance WHERE id = ?`, db.instanceID(typ, "after1")); s != int(djangodb.Finished) {
			t.Errorf("%s::after1 is %s after the bad inputs, want FINISHED", typ, djangodb.Status(s))
		}
	}
	if lc := led.read(); lc.lines != 1 {
		t.Errorf("the ledger handler ran %d times, want once (only for the valid input)", lc.lines)
	}
	if p := a.Grep(`panic|goroutine \d+ \[`); len(p) != 0 {
		t.Errorf("atpd panicked: %v", p)
	}
	db.checkConsistent()
	t.Logf("FIGURES badinput: cases=%d rss_after=%dMiB", bad, rss>>20)
}
