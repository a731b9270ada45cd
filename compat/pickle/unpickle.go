package pickle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Limits applied when DecodeOptions leaves them zero.
const (
	// DefaultMaxSize bounds the decompressed pickle: 64 MiB.
	DefaultMaxSize = 64 << 20
	// DefaultMaxDepth bounds container nesting. CPython cannot pickle
	// anything deeper than its recursion limit (1000) either.
	DefaultMaxDepth = 1000
	// maxWalkDepth bounds the recursion of this package's own walkers
	// (JSON, encoder, keys) on values built in Go.
	maxWalkDepth = 10000
)

// DecodeOptions bound decoding. The zero value uses the defaults.
type DecodeOptions struct {
	// MaxSize is the largest pickle, in bytes after decompression, that is
	// decoded; a larger one fails with ErrTooLarge before being read whole.
	MaxSize int
	// MaxDepth is the deepest container nesting accepted ([[1]] is 2); a
	// deeper pickle fails with ErrTooDeep.
	MaxDepth int
}

func (o DecodeOptions) maxSize() int {
	if o.MaxSize > 0 {
		return o.MaxSize
	}
	return DefaultMaxSize
}

func (o DecodeOptions) maxDepth() int {
	if o.MaxDepth > 0 {
		return min(o.MaxDepth, math.MaxInt32-1)
	}
	return DefaultMaxDepth
}

// Error is a pickle that cannot be decoded: the opcode that failed and its
// offset in the (decompressed) pickle. errors.Is(err, ErrPickle) holds for
// every *Error; Err, when set, is a more precise cause (ErrTooDeep,
// ErrUnhashable).
type Error struct {
	Offset int
	Opcode byte
	AtEnd  bool // the data ended before a STOP opcode
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.AtEnd {
		return fmt.Sprintf("pickle: at offset %d (end of data): %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("pickle: %s at offset %d: %s", opName(e.Opcode), e.Offset, e.Msg)
}

// Is makes every *Error match ErrPickle.
func (e *Error) Is(target error) bool { return target == ErrPickle }

func (e *Error) Unwrap() error { return e.Err }

// Opcodes, named as in CPython's pickletools.
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opExt1           = 0x82
	opExt2           = 0x83
	opExt4           = 0x84
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98
)

var opNames = map[byte]string{
	opMark: "MARK", opStop: "STOP", opPop: "POP", opPopMark: "POP_MARK", opDup: "DUP",
	opFloat: "FLOAT", opInt: "INT", opBinInt: "BININT", opBinInt1: "BININT1", opLong: "LONG",
	opBinInt2: "BININT2", opNone: "NONE", opPersID: "PERSID", opBinPersID: "BINPERSID",
	opReduce: "REDUCE", opString: "STRING", opBinString: "BINSTRING",
	opShortBinString: "SHORT_BINSTRING", opUnicode: "UNICODE", opBinUnicode: "BINUNICODE",
	opAppend: "APPEND", opBuild: "BUILD", opGlobal: "GLOBAL", opDict: "DICT",
	opEmptyDict: "EMPTY_DICT", opAppends: "APPENDS", opGet: "GET", opBinGet: "BINGET",
	opInst: "INST", opLongBinGet: "LONG_BINGET", opList: "LIST", opEmptyList: "EMPTY_LIST",
	opObj: "OBJ", opPut: "PUT", opBinPut: "BINPUT", opLongBinPut: "LONG_BINPUT",
	opSetItem: "SETITEM", opTuple: "TUPLE", opEmptyTuple: "EMPTY_TUPLE", opSetItems: "SETITEMS",
	opBinFloat: "BINFLOAT", opProto: "PROTO", opNewObj: "NEWOBJ", opExt1: "EXT1", opExt2: "EXT2",
	opExt4: "EXT4", opTuple1: "TUPLE1", opTuple2: "TUPLE2", opTuple3: "TUPLE3",
	opNewTrue: "NEWTRUE", opNewFalse: "NEWFALSE", opLong1: "LONG1", opLong4: "LONG4",
	opBinBytes: "BINBYTES", opShortBinBytes: "SHORT_BINBYTES", opShortBinUni: "SHORT_BINUNICODE",
	opBinUnicode8: "BINUNICODE8", opBinBytes8: "BINBYTES8", opEmptySet: "EMPTY_SET",
	opAddItems: "ADDITEMS", opFrozenSet: "FROZENSET", opNewObjEx: "NEWOBJ_EX",
	opStackGlobal: "STACK_GLOBAL", opMemoize: "MEMOIZE", opFrame: "FRAME",
	opByteArray8: "BYTEARRAY8", opNextBuffer: "NEXT_BUFFER", opReadOnlyBuffer: "READONLY_BUFFER",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("unknown opcode 0x%02x", op)
}

// Mutable containers while decoding. Python builds lists, dicts and sets
// empty and fills them later (APPENDS, SETITEMS, ADDITEMS), possibly after
// they were stored in the memo or in another container, so they need a
// stable identity until STOP; freeze then turns them into the plain Go
// values handlers get.
//
// Small lists and tuples keep their items inside the box: one allocation
// instead of two for the many short ones (coordinates, argument tuples).
type listBox struct {
	items  []any
	height int32
	walk   uint8
	inline [4]any
}

type tupleBox struct {
	items  []any
	height int32
	walk   uint8
	keyed  bool
	key    string
	inline [4]any
}

type setBox struct {
	items  []any
	index  hindex
	frozen bool
	height int32
	walk   uint8
	keyed  bool
	key    string
}

func (s *setBox) itemAt(i int) any { return s.items[i] }

// add adds v unless an equal element is there.
func (s *setBox) add(h *hasher, v any) error {
	k, err := h.key(v, 0)
	if err != nil {
		return err
	}
	if s.index.find(k, len(s.items), s.itemAt) < 0 {
		s.items = append(s.items, v)
		s.index.added(k, len(s.items), s.itemAt)
	}
	return nil
}

func heightOf(v any) int32 {
	switch v := v.(type) {
	case *listBox:
		return v.height
	case *tupleBox:
		return v.height
	case *setBox:
		return v.height
	case *Dict:
		if v != nil {
			return v.height
		}
	case *Object:
		if v != nil {
			return v.height
		}
	}
	return 0
}

func maxHeight(items []any) int32 {
	var h int32
	for _, it := range items {
		h = max(h, heightOf(it))
	}
	return h
}

// The memo is kept in chunks of memoChunk entries rather than one slice:
// Python 3 memoises nearly every object, and copying a pointer slice of
// hundreds of thousands of entries on each growth (with the collector's
// write barriers) cost more than the rest of MEMOIZE. The first chunk
// grows from small, as most inputs are a few hundred bytes.
const memoChunk = 1024

type holeType struct{}

// memoHole marks memo slots never written (None is a valid memo value).
var memoHole any = holeType{}

// slab hands out values of type T from arrays allocated together, so that
// the many small containers of a large input cost a fraction of an
// allocation each. Arrays start small and double (a typical input holds a
// few containers) up to slabMax.
type slab[T any] struct {
	free []T
	next int
}

const slabMax = 256

func (s *slab[T]) get() *T {
	if len(s.free) == 0 {
		s.next = min(max(2*s.next, 1), slabMax)
		s.free = make([]T, s.next)
	}
	v := &s.free[0]
	s.free = s.free[1:]
	return v
}

// take returns an empty slice with room for exactly n elements; appending
// beyond n reallocates rather than running into its neighbours.
func (s *slab[T]) take(n int) []T {
	if n > slabMax/4 {
		return make([]T, 0, n)
	}
	if len(s.free) < n {
		s.next = min(max(2*s.next, n), slabMax)
		s.free = make([]T, s.next)
	}
	v := s.free[0:0:n]
	s.free = s.free[n:]
	return v
}

type unpickler struct {
	data     []byte
	pos      int
	op       int // offset of the opcode being run
	stack    []any
	marks    []int
	memo     [][]any
	memoN    uint64 // MEMOIZE's next index: the number of entries stored
	memoMap  map[uint64]any
	maxDepth int32
	proto    int

	h       hasher
	lists   slab[listBox]
	tuples  slab[tupleBox]
	dicts   slab[Dict]
	entries slab[DictEntry]
}

func (u *unpickler) newList() *listBox {
	l := u.lists.get()
	l.height = 1
	l.items = l.inline[:0:len(l.inline)]
	return l
}

func (u *unpickler) newDict() *Dict {
	d := u.dicts.get()
	d.height = 1
	return d
}

// newTuple makes a tuple of a copy of items.
func (u *unpickler) newTuple(items []any) *tupleBox {
	t := u.tuples.get()
	if len(items) <= len(t.inline) {
		t.items = t.inline[:len(items):len(items)]
		copy(t.items, items)
	} else {
		t.items = slices.Clone(items)
	}
	return t
}

// Unpickle decodes a raw pickle of any protocol (0 to 5) with the default
// limits.
func Unpickle(data []byte) (any, error) {
	return DecodeOptions{}.Unpickle(data)
}

// Unpickle decodes a raw pickle. Data after the STOP opcode is ignored, as
// Python's pickle.loads ignores it. The decoded value does not refer to
// data, which the caller may reuse.
func (o DecodeOptions) Unpickle(data []byte) (any, error) {
	if len(data) > o.maxSize() {
		return nil, fmt.Errorf("pickle: %w: %d bytes, the limit is %d", ErrTooLarge, len(data), o.maxSize())
	}
	return o.unpickleOwned(bytes.Clone(data))
}

// unpickleOwned decodes a buffer nobody else holds or will change. Strings
// and bytes in the result point into it instead of being copied one by one:
// with many short strings that halves the allocations, at the price of the
// whole buffer living as long as any of them.
func (o DecodeOptions) unpickleOwned(data []byte) (any, error) {
	u := &unpickler{
		data:     data,
		stack:    make([]any, 0, 32),
		maxDepth: int32(o.maxDepth()),
	}
	v, err := u.run()
	if err != nil {
		return nil, err
	}
	return freeze(v, u.maxDepth, u.op)
}

func (u *unpickler) errf(format string, args ...any) error {
	return &Error{Offset: u.op, Opcode: u.data[u.op], Msg: fmt.Sprintf(format, args...)}
}

// wrap attaches the failing opcode to an error from a helper, keeping it
// reachable for errors.Is.
func (u *unpickler) wrap(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	e := &Error{Offset: u.op, Opcode: u.data[u.op], Msg: err.Error()}
	if errors.Is(err, ErrTooDeep) || errors.Is(err, ErrUnhashable) {
		e.Err = err
	}
	return e
}

func (u *unpickler) tooDeep() error {
	return &Error{Offset: u.op, Opcode: u.data[u.op], Err: ErrTooDeep,
		Msg: fmt.Sprintf("containers nested deeper than %d levels", u.maxDepth)}
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) floor() int {
	if len(u.marks) == 0 {
		return 0
	}
	return u.marks[len(u.marks)-1]
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) <= u.floor() {
		return nil, u.errf("unpickling stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack[len(u.stack)-1] = nil
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) <= u.floor() {
		return nil, u.errf("unpickling stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark removes and returns the items above the topmost mark. The slice
// aliases the stack: use it before the next push.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("could not find MARK")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := u.stack[m:]
	u.stack = u.stack[:m]
	return items, nil
}

// take returns the next n bytes, refusing lengths beyond the data before
// anything is allocated.
func (u *unpickler) take(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.errf("declared length %d exceeds the %d bytes left", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) byte1() (byte, error) {
	if u.pos >= len(u.data) {
		return 0, u.errf("data ends inside the opcode's argument")
	}
	b := u.data[u.pos]
	u.pos++
	return b, nil
}

func (u *unpickler) fixed(n int) ([]byte, error) {
	if n > len(u.data)-u.pos {
		return nil, u.errf("data ends inside the opcode's argument")
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) line() ([]byte, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return nil, u.errf("argument not terminated by a newline")
	}
	b := u.data[u.pos : u.pos+i]
	u.pos += i + 1
	return b, nil
}

// memoBlocks bounds the dense memo: indices beyond it (LONG_BINPUT can
// name any 32-bit index) go to a map instead of allocating blocks.
const memoBlocks = 1 << 16

func (u *unpickler) memoPut(idx uint64, v any) {
	if bi := idx / memoChunk; bi < memoBlocks && bi <= uint64(len(u.memo)) {
		if bi == uint64(len(u.memo)) {
			u.memo = append(u.memo, nil)
		}
		c, i := u.memo[bi], int(idx%memoChunk)
		if i >= len(c) {
			n := memoChunk
			if bi == 0 {
				n = min(memoChunk, max(i+1, 2*len(c), 16))
			}
			nc := make([]any, n)
			copy(nc, c)
			for j := len(c); j < n; j++ {
				nc[j] = memoHole
			}
			c, u.memo[bi] = nc, nc
		}
		if c[i] == memoHole {
			u.memoN++
		}
		c[i] = v
		return
	}
	if u.memoMap == nil {
		u.memoMap = make(map[uint64]any)
	}
	if _, ok := u.memoMap[idx]; !ok {
		u.memoN++
	}
	u.memoMap[idx] = v
}

func (u *unpickler) memoGet(idx uint64) error {
	if bi := idx / memoChunk; bi < uint64(len(u.memo)) {
		if c, i := u.memo[bi], idx%memoChunk; i < uint64(len(c)) && c[i] != memoHole {
			u.push(c[i])
			return nil
		}
	}
	if v, ok := u.memoMap[idx]; ok {
		u.push(v)
		return nil
	}
	return u.errf("memo value not found at index %d", idx)
}

// run executes opcodes until STOP. It never recurses, so the depth of the
// data cannot exhaust the Go stack here; freeze bounds it afterwards.
func (u *unpickler) run() (any, error) {
	for {
		if u.pos >= len(u.data) {
			return nil, &Error{Offset: u.pos, AtEnd: true, Msg: "pickle data was truncated (no STOP opcode)"}
		}
		u.op = u.pos
		code := u.data[u.pos]
		u.pos++
		var err error
		switch code {
		case opStop:
			return u.pop()
		case opMark:
			u.marks = append(u.marks, len(u.stack))
		case opPop:
			if len(u.stack) > u.floor() {
				_, err = u.pop()
			} else {
				_, err = u.popMark()
			}
		case opPopMark:
			_, err = u.popMark()
		case opDup:
			var v any
			if v, err = u.top(); err == nil {
				u.push(v)
			}
		case opProto:
			var p byte
			if p, err = u.byte1(); err == nil {
				if p > 5 {
					err = u.errf("unsupported pickle protocol: %d", p)
				}
				u.proto = int(p)
			}
		case opFrame:
			var b []byte
			if b, err = u.fixed(8); err == nil {
				if n := binary.LittleEndian.Uint64(b); n > uint64(len(u.data)-u.pos) {
					err = u.errf("frame length %d exceeds the %d bytes left", n, len(u.data)-u.pos)
				}
			}
		case opNone:
			u.push(nil)
		case opNewTrue:
			u.push(true)
		case opNewFalse:
			u.push(false)
		case opInt:
			err = u.loadInt()
		case opLong:
			err = u.loadLong()
		case opBinInt:
			var b []byte
			if b, err = u.fixed(4); err == nil {
				u.push(int64(int32(binary.LittleEndian.Uint32(b))))
			}
		case opBinInt1:
			var b byte
			if b, err = u.byte1(); err == nil {
				u.push(int64(b))
			}
		case opBinInt2:
			var b []byte
			if b, err = u.fixed(2); err == nil {
				u.push(int64(binary.LittleEndian.Uint16(b)))
			}
		case opLong1:
			var n byte
			if n, err = u.byte1(); err == nil {
				var b []byte
				if b, err = u.take(uint64(n)); err == nil {
					u.push(decodeLong(b))
				}
			}
		case opLong4:
			var b []byte
			if b, err = u.fixed(4); err == nil {
				n := int32(binary.LittleEndian.Uint32(b))
				if n < 0 {
					err = u.errf("LONG pickle has negative byte count")
				} else if b, err = u.take(uint64(n)); err == nil {
					u.push(decodeLong(b))
				}
			}
		case opFloat:
			err = u.loadFloat()
		case opBinFloat:
			var b []byte
			if b, err = u.fixed(8); err == nil {
				u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case opString:
			err = u.loadString()
		case opBinString:
			var b []byte
			if b, err = u.fixed(4); err == nil {
				n := int32(binary.LittleEndian.Uint32(b))
				if n < 0 {
					err = u.errf("BINSTRING pickle has negative byte count")
				} else if b, err = u.take(uint64(n)); err == nil {
					u.push(ownedString(b))
				}
			}
		case opShortBinString:
			err = u.loadCounted(1, pushStr)
		case opUnicode:
			var b []byte
			if b, err = u.line(); err == nil {
				var s string
				if s, err = decodeRawUnicodeEscape(b); err != nil {
					err = u.errf("%v", err)
				} else {
					u.push(s)
				}
			}
		case opShortBinUni:
			err = u.loadCounted(1, pushUTF8)
		case opBinUnicode:
			err = u.loadCounted(4, pushUTF8)
		case opBinUnicode8:
			err = u.loadCounted(8, pushUTF8)
		case opShortBinBytes:
			err = u.loadCounted(1, pushBytes)
		case opBinBytes:
			err = u.loadCounted(4, pushBytes)
		case opBinBytes8, opByteArray8:
			err = u.loadCounted(8, pushBytes)
		case opNextBuffer:
			err = u.errf("pickle stream refers to out-of-band data but no buffers were given")
		case opReadOnlyBuffer:
			_, err = u.top()
		case opEmptyTuple:
			u.push(&tupleBox{height: 1})
		case opTuple:
			var items []any
			if items, err = u.popMark(); err == nil {
				err = u.pushTuple(items)
			}
		case opTuple1, opTuple2, opTuple3:
			n := int(code-opTuple1) + 1
			if len(u.stack)-u.floor() < n {
				err = u.errf("unpickling stack underflow")
			} else {
				items := u.stack[len(u.stack)-n:]
				u.stack = u.stack[:len(u.stack)-n]
				err = u.pushTuple(items)
			}
		case opEmptyList:
			u.push(u.newList())
		case opList:
			var items []any
			if items, err = u.popMark(); err == nil {
				l := u.newList()
				l.items = append(l.items, items...)
				l.height = maxHeight(items) + 1
				if l.height > u.maxDepth {
					return nil, u.tooDeep()
				}
				u.push(l)
			}
		case opAppend:
			if n := len(u.stack); n-u.floor() < 2 {
				err = u.errf("unpickling stack underflow")
			} else {
				err = u.appendTo(u.stack[n-2], u.stack[n-1:])
				u.stack[n-1] = nil
				u.stack = u.stack[:n-1]
			}
		case opAppends:
			var items []any
			if items, err = u.popMark(); err == nil {
				var target any
				if target, err = u.top(); err == nil {
					err = u.appendTo(target, items)
				}
			}
		case opEmptyDict:
			u.push(u.newDict())
		case opDict:
			var items []any
			if items, err = u.popMark(); err == nil {
				d := u.newDict()
				if err = u.setItems(d, items); err == nil {
					u.push(d)
				}
			}
		case opSetItem:
			if len(u.stack)-u.floor() < 3 {
				err = u.errf("unpickling stack underflow")
			} else {
				kv := u.stack[len(u.stack)-2:]
				err = u.setItems(u.stack[len(u.stack)-3], kv)
				u.stack = u.stack[:len(u.stack)-2]
			}
		case opSetItems:
			var items []any
			if items, err = u.popMark(); err == nil {
				var target any
				if target, err = u.top(); err == nil {
					err = u.setItems(target, items)
				}
			}
		case opEmptySet:
			u.push(&setBox{height: 1})
		case opAddItems:
			var items []any
			if items, err = u.popMark(); err == nil {
				var target any
				if target, err = u.top(); err == nil {
					err = u.addItems(target, items)
				}
			}
		case opFrozenSet:
			var items []any
			if items, err = u.popMark(); err == nil {
				s := &setBox{frozen: true, height: 1}
				for _, it := range items {
					if err = s.add(&u.h, it); err != nil {
						break
					}
				}
				if err == nil {
					s.height = maxHeight(s.items) + 1
					if s.height > u.maxDepth {
						return nil, u.tooDeep()
					}
					u.push(s)
				}
			}
		case opGlobal:
			var mod, name []byte
			if mod, err = u.line(); err == nil {
				if name, err = u.line(); err == nil {
					u.push(makeGlobal(string(mod), string(name), u.proto))
				}
			}
		case opStackGlobal:
			err = u.loadStackGlobal()
		case opReduce:
			err = u.loadReduce()
		case opNewObj:
			err = u.loadNewObj(false)
		case opNewObjEx:
			err = u.loadNewObj(true)
		case opInst:
			err = u.loadInst()
		case opObj:
			var items []any
			if items, err = u.popMark(); err == nil {
				if len(items) == 0 {
					err = u.errf("OBJ without a class")
				} else {
					err = u.instantiate(items[0], slices.Clone(items[1:]), true)
				}
			}
		case opBuild:
			var state any
			if state, err = u.pop(); err == nil {
				var inst any
				if inst, err = u.top(); err == nil {
					err = u.build(inst, state)
				}
			}
		case opPut:
			var b []byte
			if b, err = u.line(); err == nil {
				n, perr := strconv.ParseInt(string(b), 10, 64)
				if perr != nil || n < 0 {
					err = u.errf("invalid PUT index %q", b)
				} else {
					var v any
					if v, err = u.top(); err == nil {
						u.memoPut(uint64(n), v)
					}
				}
			}
		case opBinPut:
			var i byte
			if i, err = u.byte1(); err == nil {
				var v any
				if v, err = u.top(); err == nil {
					u.memoPut(uint64(i), v)
				}
			}
		case opLongBinPut:
			var b []byte
			if b, err = u.fixed(4); err == nil {
				var v any
				if v, err = u.top(); err == nil {
					u.memoPut(uint64(binary.LittleEndian.Uint32(b)), v)
				}
			}
		case opMemoize:
			var v any
			if v, err = u.top(); err == nil {
				u.memoPut(u.memoN, v)
			}
		case opGet:
			var b []byte
			if b, err = u.line(); err == nil {
				n, perr := strconv.ParseInt(string(b), 10, 64)
				if perr != nil || n < 0 {
					err = u.errf("invalid GET index %q", b)
				} else {
					err = u.memoGet(uint64(n))
				}
			}
		case opBinGet:
			var i byte
			if i, err = u.byte1(); err == nil {
				err = u.memoGet(uint64(i))
			}
		case opLongBinGet:
			var b []byte
			if b, err = u.fixed(4); err == nil {
				err = u.memoGet(uint64(binary.LittleEndian.Uint32(b)))
			}
		case opPersID, opBinPersID:
			err = u.errf("a persistent id was encountered, but this decoder has no persistent_load")
		case opExt1, opExt2, opExt4:
			err = u.errf("extension codes are not registered")
		default:
			err = u.errf("no such opcode")
		}
		if err != nil {
			return nil, u.wrap(err)
		}
	}
}

type pushFunc func(u *unpickler, b []byte) error

func pushStr(u *unpickler, b []byte) error { u.push(ownedString(b)); return nil }

func pushBytes(u *unpickler, b []byte) error { u.push(Bytes(b[:len(b):len(b)])); return nil }

func pushUTF8(u *unpickler, b []byte) error {
	if utf8.Valid(b) {
		u.push(ownedString(b))
		return nil
	}
	s, err := decodeUTF8(b)
	if err != nil {
		return u.errf("%v", err)
	}
	u.push(s)
	return nil
}

// ownedString views bytes of the unpickler's private buffer as a string.
// Safe because that buffer is never written after decoding starts.
func ownedString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// loadCounted reads a little-endian length of width bytes and that many
// bytes of argument.
func (u *unpickler) loadCounted(width int, f pushFunc) error {
	b, err := u.fixed(width)
	if err != nil {
		return err
	}
	var n uint64
	switch width {
	case 1:
		n = uint64(b[0])
	case 4:
		n = uint64(binary.LittleEndian.Uint32(b))
	default:
		n = binary.LittleEndian.Uint64(b)
	}
	arg, err := u.take(n)
	if err != nil {
		return err
	}
	return f(u, arg)
}

func (u *unpickler) loadInt() error {
	b, err := u.line()
	if err != nil {
		return err
	}
	switch string(b) {
	case "00":
		u.push(false)
		return nil
	case "01":
		u.push(true)
		return nil
	}
	v, err := parsePyInt(b)
	if err != nil {
		return u.errf("invalid INT argument %q", b)
	}
	u.push(v)
	return nil
}

func (u *unpickler) loadLong() error {
	b, err := u.line()
	if err != nil {
		return err
	}
	if n := len(b); n > 0 && b[n-1] == 'L' {
		b = b[:n-1]
	}
	v, err := parsePyInt(b)
	if err != nil {
		return u.errf("invalid LONG argument %q", b)
	}
	u.push(v)
	return nil
}

// parsePyInt parses a protocol-0 integer the way int(text, 0) does, giving
// int64 when it fits and *big.Int otherwise.
func parsePyInt(b []byte) (any, error) {
	s := string(bytes.TrimSpace(b))
	if v, err := strconv.ParseInt(s, 0, 64); err == nil {
		return v, nil
	}
	bi, ok := new(big.Int).SetString(s, 0)
	if !ok {
		return nil, errors.New("not an integer")
	}
	return normInt(bi), nil
}

// normInt keeps integers that fit in int64 as int64, so that a value has
// one Go representation whatever opcode carried it.
func normInt(b *big.Int) any {
	if b.IsInt64() {
		return b.Int64()
	}
	return b
}

// decodeLong reads a little-endian two's complement integer (LONG1, LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var x uint64
		for i := len(b) - 1; i >= 0; i-- {
			x = x<<8 | uint64(b[i])
		}
		if shift := 64 - 8*uint(len(b)); shift > 0 {
			return int64(x<<shift) >> shift // sign-extend
		}
		return int64(x)
	}
	be := make([]byte, len(b))
	for i, c := range b {
		be[len(b)-1-i] = c
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return normInt(v)
}

func (u *unpickler) loadFloat() error {
	b, err := u.line()
	if err != nil {
		return err
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return u.errf("invalid FLOAT argument %q", b)
	}
	u.push(f)
	return nil
}

func (u *unpickler) loadString() error {
	b, err := u.line()
	if err != nil {
		return err
	}
	// Python 2 wrote repr(str): quoted with ' or ", escapes inside.
	if len(b) < 2 || b[0] != b[len(b)-1] || (b[0] != '\'' && b[0] != '"') {
		return u.errf("the STRING opcode argument must be quoted")
	}
	s, err := unescapeString(b[1 : len(b)-1])
	if err != nil {
		return u.errf("%v", err)
	}
	u.push(s)
	return nil
}

// pushTuple pushes a tuple of a copy of items (which may alias the stack).
func (u *unpickler) pushTuple(items []any) error {
	t := u.newTuple(items)
	t.height = maxHeight(items) + 1
	if t.height > u.maxDepth {
		return u.tooDeep()
	}
	u.push(t)
	return nil
}

// grow records that a container now holds a child of height h.
func (u *unpickler) grow(height *int32, h int32) error {
	if h+1 > *height {
		*height = h + 1
		if *height > u.maxDepth {
			return u.tooDeep()
		}
	}
	return nil
}

// appendTo runs APPEND/APPENDS: the target (left on the stack) is a list,
// or an object of a list subclass.
func (u *unpickler) appendTo(target any, items []any) error {
	switch t := target.(type) {
	case *listBox:
		t.items = append(t.items, items...)
		return u.grow(&t.height, maxHeight(items))
	case *Object:
		t.ListItems = append(t.ListItems, items...)
		return u.grow(&t.height, maxHeight(items))
	}
	return u.errf("cannot append to %s", kindName(target))
}

// setItems runs SETITEM/SETITEMS/DICT on a dict or an object of a dict
// subclass.
func (u *unpickler) setItems(target any, items []any) error {
	if len(items)%2 != 0 {
		return u.errf("odd number of items for a dict (%d)", len(items))
	}
	var d *Dict
	var outer *int32 // the object's height when d holds an object's items
	switch t := target.(type) {
	case *Dict:
		d = t
	case *Object:
		if t.DictItems == nil {
			t.DictItems = &Dict{height: 1}
		}
		d, outer = t.DictItems, &t.height
	default:
		return u.errf("cannot set items on %s", kindName(target))
	}
	if len(d.entries) == 0 && cap(d.entries) < len(items)/2 {
		d.entries = u.entries.take(len(items) / 2)
	} else {
		d.entries = slices.Grow(d.entries, len(items)/2)
	}
	for i := 0; i < len(items); i += 2 {
		k, err := u.h.key(items[i], 0)
		if err != nil {
			return u.wrap(err)
		}
		d.set(k, items[i], items[i+1])
	}
	if err := u.grow(&d.height, maxHeight(items)); err != nil {
		return err
	}
	if outer != nil {
		return u.grow(outer, d.height)
	}
	return nil
}

// addItems runs ADDITEMS.
func (u *unpickler) addItems(target any, items []any) error {
	switch t := target.(type) {
	case *setBox:
		if t.frozen {
			// Python refuses it too (a frozenset has no add), and one
			// already used as a key must not change.
			return u.errf("cannot add items to frozenset")
		}
		for _, it := range items {
			if err := t.add(&u.h, it); err != nil {
				return u.wrap(err)
			}
		}
		return u.grow(&t.height, maxHeight(items))
	case *Object:
		t.ListItems = append(t.ListItems, items...)
		return u.grow(&t.height, maxHeight(items))
	}
	return u.errf("cannot add items to %s", kindName(target))
}

func (u *unpickler) loadStackGlobal() error {
	name, err := u.pop()
	if err != nil {
		return err
	}
	mod, err := u.pop()
	if err != nil {
		return err
	}
	ms, ok1 := mod.(string)
	ns, ok2 := name.(string)
	if !ok1 || !ok2 {
		return u.errf("STACK_GLOBAL requires str module and name, got %s and %s", kindName(mod), kindName(name))
	}
	u.push(makeGlobal(ms, ns, u.proto))
	return nil
}

func (u *unpickler) loadReduce() error {
	args, err := u.pop()
	if err != nil {
		return err
	}
	fn, err := u.pop()
	if err != nil {
		return err
	}
	t, ok := args.(*tupleBox)
	if !ok {
		return u.errf("REDUCE arguments must be a tuple, got %s", kindName(args))
	}
	return u.instantiate(fn, t.items, false)
}

func (u *unpickler) loadNewObj(ex bool) error {
	var kwargs any
	var err error
	if ex {
		if kwargs, err = u.pop(); err != nil {
			return err
		}
	}
	args, err := u.pop()
	if err != nil {
		return err
	}
	cls, err := u.pop()
	if err != nil {
		return err
	}
	t, ok := args.(*tupleBox)
	if !ok {
		return u.errf("NEWOBJ arguments must be a tuple, got %s", kindName(args))
	}
	g, ok := cls.(Global)
	if !ok {
		return u.errf("NEWOBJ class must be a class, got %s", kindName(cls))
	}
	var kw *Dict
	if ex {
		if kw, ok = kwargs.(*Dict); !ok {
			return u.errf("NEWOBJ_EX keyword arguments must be a dict, got %s", kindName(kwargs))
		}
	}
	v, err := newObject(&u.h, g, t.items, kw)
	if err != nil {
		return u.errf("%v", err)
	}
	return u.pushObject(v)
}

func (u *unpickler) loadInst() error {
	mod, err := u.line()
	if err != nil {
		return err
	}
	name, err := u.line()
	if err != nil {
		return err
	}
	items, err := u.popMark()
	if err != nil {
		return err
	}
	return u.instantiate(makeGlobal(string(mod), string(name), u.proto), slices.Clone(items), true)
}

// instantiate calls a class (or a known function such as _codecs.encode)
// with positional arguments. INST and OBJ without arguments create the
// instance without calling __init__ (Python 2 old-style classes), which is
// what NEWOBJ does; inst says the call came from them.
func (u *unpickler) instantiate(fn any, args []any, inst bool) error {
	g, ok := fn.(Global)
	if !ok {
		return u.errf("%s is not callable", kindName(fn))
	}
	v, err := callGlobal(&u.h, g, args)
	if err != nil {
		return u.errf("%s: %v", g, err)
	}
	if o, ok := v.(*Object); ok && inst && len(args) == 0 {
		o.NewObj = true
	}
	return u.pushObject(v)
}

func (u *unpickler) pushObject(v any) error {
	if o, ok := v.(*Object); ok {
		h := max(maxHeight(o.Args), heightOf(o.Kwargs)) + 1
		if h > o.height {
			o.height = h
		}
		if o.height > u.maxDepth {
			return u.tooDeep()
		}
	}
	u.push(v)
	return nil
}

// build runs BUILD: state for an object of an unknown class is recorded;
// state for a dict, list or set (instance attributes of a subclass) has no
// place in the Go value and is dropped.
func (u *unpickler) build(inst, state any) error {
	switch t := inst.(type) {
	case *Object:
		if old, ok := t.State.(*Dict); ok {
			if nd, ok := state.(*Dict); ok && old != nd {
				for _, e := range nd.entries {
					k, _ := u.h.key(e.Key, 0) // hashed when nd was built
					old.set(k, e.Key, e.Value)
				}
				return u.grow(&t.height, heightOf(old))
			}
		}
		t.State = state
		return u.grow(&t.height, heightOf(state))
	case *Dict, *listBox, *setBox:
		return nil
	}
	return u.errf("cannot set state on %s", kindName(inst))
}
