package pickle

import (
	"crypto/sha256"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// hkey is a value's identity under Python's == for hashable values. Short
// string keys, by far the most common, are the string itself (str set), so
// that looking them up allocates nothing; every other key is a canonical
// text whose first byte says its kind. A canonical text longer than
// digestOver bytes is replaced by a SHA-256 digest of it, so that keys stay
// short whatever the value: Go cannot cache a string's hash the way Python
// does, and a map lookup hashes the whole key every time.
type hkey struct {
	s   string
	str bool
}

const (
	digestOver = 64
	// smallIndex is the size up to which an index is a linear scan: most
	// dicts in task inputs are small, and a map per dict costs more than it
	// saves.
	smallIndex = 8
)

var nanSeq atomic.Uint64

// hasher computes keys, remembering those of large values by identity: a
// pickle can store one big integer, string or tuple once and use it as a
// key any number of times, and each recomputation would cost its size.
// The zero value works; decoding keeps one for the whole pickle.
type hasher struct {
	texts map[textID]string
	bigs  map[*big.Int]string
	seen  map[ident]string
}

// textID identifies long strings and bytes by their memory.
type textID struct {
	p    uintptr
	n    int
	kind byte
}

// hashKey returns the key under which v is found in a dict or set, or
// ErrUnhashable for values Python refuses to hash.
func hashKey(v any, depth int) (hkey, error) {
	var h hasher
	return h.key(v, depth)
}

func (h *hasher) key(v any, depth int) (hkey, error) {
	if s, ok := v.(string); ok {
		if len(s) <= digestOver {
			return hkey{s: s, str: true}, nil
		}
		return hkey{s: h.long('s', unsafe.StringData(s), s)}, nil
	}
	if depth > maxWalkDepth {
		return hkey{}, fmt.Errorf("%w: key nested deeper than %d levels", ErrTooDeep, maxWalkDepth)
	}
	var s string
	switch v := v.(type) {
	case nil:
		s = "N"
	case bool:
		if v {
			s = "i1"
		} else {
			s = "i0"
		}
	case int64:
		s = "i" + strconv.FormatInt(v, 10)
	case int:
		s = "i" + strconv.Itoa(v)
	case *big.Int:
		if v.IsInt64() {
			s = "i" + strconv.FormatInt(v.Int64(), 10)
			break
		}
		if k, ok := h.bigs[v]; ok {
			return hkey{s: k}, nil
		}
		k := bigKey(v)
		if h.bigs == nil {
			h.bigs = map[*big.Int]string{}
		}
		h.bigs[v] = k
		return hkey{s: k}, nil
	case float64:
		s = floatKey(v)
	case complex128:
		if imag(v) == 0 {
			s = floatKey(real(v))
		} else {
			s = "c" + strconv.FormatUint(math.Float64bits(real(v)), 16) + "," +
				strconv.FormatUint(math.Float64bits(imag(v)), 16)
		}
	case Bytes:
		var p *byte
		if len(v) > 0 {
			p = &v[0]
		}
		return hkey{s: h.long('b', p, string(v))}, nil
	case Decimal:
		return hkey{s: h.long('d', unsafe.StringData(string(v)), string(v))}, nil
	case DateTime:
		if v.Naive {
			s = "T" + v.Time.Format("2006-01-02T15:04:05.999999999")
		} else {
			s = "Z" + v.Time.UTC().Format("2006-01-02T15:04:05.999999999")
		}
	case time.Time:
		s = "Z" + v.UTC().Format("2006-01-02T15:04:05.999999999")
	case Date:
		s = fmt.Sprintf("D%d-%d-%d", v.Year, v.Month, v.Day)
	case Time:
		s = fmt.Sprintf("t%d:%d:%d.%d/%t%d", v.Hour, v.Minute, v.Second, v.Microsecond, v.HasOffset, v.Offset)
	case Timedelta:
		s = fmt.Sprintf("r%d/%d/%d", v.Days, v.Seconds, v.Microseconds)
	case Global:
		s = digest("g" + v.Module + "\x00" + v.Name)
	case *Object:
		// Instances hash by identity unless their class says otherwise,
		// which this package cannot know.
		s = fmt.Sprintf("o%p", v)
	case *tupleBox:
		if !v.keyed {
			k, err := h.seq('(', v.items, depth)
			if err != nil {
				return hkey{}, err
			}
			v.key, v.keyed = k, true
		}
		return hkey{s: v.key}, nil
	case *setBox:
		if !v.frozen {
			return hkey{}, fmt.Errorf("%w: set", ErrUnhashable)
		}
		if !v.keyed {
			k, err := h.seq('{', v.items, depth)
			if err != nil {
				return hkey{}, err
			}
			v.key, v.keyed = k, true
		}
		return hkey{s: v.key}, nil
	case Tuple:
		return h.final('(', v, depth)
	case FrozenSet:
		return h.final('{', v, depth)
	default:
		return hkey{}, fmt.Errorf("%w: %s", ErrUnhashable, kindName(v))
	}
	return hkey{s: s}, nil
}

// long is the key of text-like values, remembered by their memory.
func (h *hasher) long(kind byte, p *byte, text string) string {
	if len(text) < digestOver {
		return string(kind) + text
	}
	id := textID{p: uintptr(unsafe.Pointer(p)), n: len(text), kind: kind}
	if k, ok := h.texts[id]; ok {
		return k
	}
	k := digest(string(kind) + text)
	if h.texts == nil {
		h.texts = map[textID]string{}
	}
	h.texts[id] = k
	return k
}

// final is the key of a Tuple or FrozenSet built in Go or handed out by
// Decode, remembered by identity for the length of one hasher's use, so
// that a structure sharing sub-tuples costs its size, not its unfolded
// size.
func (h *hasher) final(open byte, items []any, depth int) (hkey, error) {
	id, ok := identity(items)
	if ok {
		id.kind = open
		if k, ok := h.seen[id]; ok {
			return hkey{s: k}, nil
		}
	}
	k, err := h.seq(open, items, depth)
	if err != nil {
		return hkey{}, err
	}
	if ok {
		if h.seen == nil {
			h.seen = map[ident]string{}
		}
		h.seen[id] = k
	}
	return hkey{s: k}, nil
}

// floatKey makes a float that equals an integer share the integer's key,
// as in Python (hash(1.0) == hash(1) and 1.0 == 1).
func floatKey(f float64) string {
	switch {
	case math.IsNaN(f):
		// NaN never equals itself: every NaN key is a new key.
		return "n" + strconv.FormatUint(nanSeq.Add(1), 10)
	case math.IsInf(f, 0) || f != math.Trunc(f):
		return "f" + strconv.FormatUint(math.Float64bits(f), 16)
	case f >= -(1<<63) && f < 1<<63:
		return "i" + strconv.FormatInt(int64(f), 10)
	default:
		i, _ := big.NewFloat(f).Int(nil)
		return bigKey(i)
	}
}

// bigKey is the key of an integer beyond int64 (within, keys are decimal
// so that they equal those of int64 values). Hexadecimal, because decimal
// conversion of a huge integer is superlinear (0.6 s for a 1 MiB one).
func bigKey(v *big.Int) string {
	return digest("x" + v.Text(16))
}

// digest returns s when short, else a fixed-size digest of it. Distinct
// texts colliding would need a SHA-256 collision.
func digest(s string) string {
	if len(s) <= digestOver {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "#" + string(sum[:16])
}

// seq is the key of a tuple (items in order) or frozenset (item keys
// sorted): the digest of the items' keys, each length-prefixed.
func (h *hasher) seq(open byte, items []any, depth int) (string, error) {
	parts := make([]string, len(items))
	n := 2
	for i, it := range items {
		k, err := h.key(it, depth+1)
		if err != nil {
			return "", err
		}
		tag := "k"
		if k.str {
			tag = "s"
		}
		parts[i] = strconv.Itoa(len(k.s)) + tag + ":" + k.s
		n += len(parts[i])
	}
	if open == '{' {
		slices.Sort(parts)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(open)
	for _, p := range parts {
		b.WriteString(p)
	}
	if open == '(' {
		b.WriteByte(')')
	} else {
		b.WriteByte('}')
	}
	return digest(b.String()), nil
}

// hindex finds keys among a dict's or set's entries. While every key is a
// short string, the entries themselves are compared and nothing else is
// stored; once another key arrives, each entry's hash key is kept (never
// recomputed: that can be costly); beyond smallIndex entries a map is
// built.
type hindex struct {
	keys []hkey
	m    map[hkey]int32
}

// find returns the position of k among n entries whose keys at gives, or -1.
func (h *hindex) find(k hkey, n int, at func(int) any) int {
	switch {
	case h.m != nil:
		if i, ok := h.m[k]; ok {
			return int(i)
		}
	case h.keys != nil:
		for i := range h.keys {
			if h.keys[i] == k {
				return i
			}
		}
	case k.str:
		for i := range n {
			if s, ok := at(i).(string); ok && s == k.s {
				return i
			}
		}
	}
	return -1
}

// added records that entry n-1 has key k.
func (h *hindex) added(k hkey, n int, at func(int) any) {
	if h.m != nil {
		h.m[k] = int32(n - 1)
		return
	}
	if h.keys == nil && !k.str {
		h.keys = make([]hkey, n-1, n)
		for i := range n - 1 {
			h.keys[i] = hkey{s: at(i).(string), str: true}
		}
	}
	if h.keys != nil {
		h.keys = append(h.keys, k)
	}
	if n <= smallIndex {
		return
	}
	h.m = make(map[hkey]int32, 2*n)
	for i := range n {
		if h.keys != nil {
			h.m[h.keys[i]] = int32(i)
		} else {
			h.m[hkey{s: at(i).(string), str: true}] = int32(i)
		}
	}
	h.keys = nil
}

// ident is a container's identity for the encoder's memo and the JSON
// writer's cycle check. Slices are identified by their first element and
// length, so a value and a shorter re-slice of it are different containers.
type ident struct {
	p    uintptr
	n    int
	kind byte
}

func identity(v any) (ident, bool) {
	var (
		p    uintptr
		n    = -1
		kind byte
	)
	switch v := v.(type) {
	case *Dict:
		if v == nil {
			return ident{}, false
		}
		p, kind = uintptr(reflect.ValueOf(v).UnsafePointer()), 'd'
	case *Object:
		if v == nil {
			return ident{}, false
		}
		p, kind = uintptr(reflect.ValueOf(v).UnsafePointer()), 'o'
	case []any:
		p, n, kind = sliceIdent(v), len(v), 'l'
	case Tuple:
		p, n, kind = sliceIdent(v), len(v), 't'
	case Set:
		p, n, kind = sliceIdent(v), len(v), 's'
	case FrozenSet:
		p, n, kind = sliceIdent(v), len(v), 'f'
	default:
		return ident{}, false
	}
	if n == 0 || p == 0 {
		return ident{}, false
	}
	return ident{p: p, n: n, kind: kind}, true
}

func sliceIdent(s []any) uintptr {
	if len(s) == 0 {
		return 0
	}
	return uintptr(reflect.ValueOf(&s[0]).UnsafePointer())
}
