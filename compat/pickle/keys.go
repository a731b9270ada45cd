package pickle

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// hkey is a value's identity under Python's == for hashable values. String
// keys, by far the most common, are the string itself (str set) so that
// looking them up allocates nothing; every other key is a canonical text
// whose first byte says its kind.
type hkey struct {
	s   string
	str bool
}

const (
	// maxKeyLen bounds a canonical key. Tuples that share sub-tuples
	// through the memo double their text at every level, so without a bound
	// a 100-byte pickle could ask for a key of 2^50 bytes.
	maxKeyLen = 1 << 20
	// smallIndex is the size up to which an index is a linear scan: most
	// dicts in task inputs are small, and a map per dict costs more than it
	// saves.
	smallIndex = 8
)

var nanSeq atomic.Uint64

// hashKey returns the key under which v is found in a dict or set, or
// ErrUnhashable for values Python refuses to hash.
func hashKey(v any, depth int) (hkey, error) {
	if s, ok := v.(string); ok {
		return hkey{s: s, str: true}, nil
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
		} else {
			s = "i" + v.String()
		}
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
		s = "b" + string(v)
	case Decimal:
		s = "d" + string(v)
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
		s = "g" + v.Module + "\x00" + v.Name
	case *Object:
		// Instances hash by identity unless their class says otherwise,
		// which this package cannot know.
		s = fmt.Sprintf("o%p", v)
	case *tupleBox:
		if v.keyed {
			return hkey{s: v.key}, nil
		}
		k, err := seqKey('(', v.items, depth, false)
		if err != nil {
			return hkey{}, err
		}
		v.key, v.keyed = k, true
		return hkey{s: k}, nil
	case Tuple:
		k, err := seqKey('(', v, depth, false)
		return hkey{s: k}, err
	case *setBox:
		if !v.frozen {
			return hkey{}, fmt.Errorf("%w: set", ErrUnhashable)
		}
		k, err := seqKey('{', v.items, depth, true)
		return hkey{s: k}, err
	case FrozenSet:
		k, err := seqKey('{', v, depth, true)
		return hkey{s: k}, err
	default:
		return hkey{}, fmt.Errorf("%w: %s", ErrUnhashable, kindName(v))
	}
	return hkey{s: s}, nil
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
		return "i" + i.String()
	}
}

// seqKey is the key of a tuple (ordered) or frozenset (sorted element keys).
func seqKey(open byte, items []any, depth int, sorted bool) (string, error) {
	parts := make([]string, len(items))
	n := 2
	for i, it := range items {
		k, err := hashKey(it, depth+1)
		if err != nil {
			return "", err
		}
		tag := "k"
		if k.str {
			tag = "s"
		}
		parts[i] = strconv.Itoa(len(k.s)) + tag + ":" + k.s
		n += len(parts[i])
		if n > maxKeyLen {
			return "", fmt.Errorf("%w: key longer than %d bytes", ErrUnhashable, maxKeyLen)
		}
	}
	if sorted {
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
	return b.String(), nil
}

// hindex finds keys among a dict's or set's entries. While the container
// is small there is no map: keys are compared with the entries themselves,
// which for string keys costs no allocation at all.
type hindex struct {
	m map[hkey]int32
}

// find returns the position of k among n keys given by at, or -1.
func (h *hindex) find(k hkey, n int, at func(int) any) int {
	if h.m != nil {
		if i, ok := h.m[k]; ok {
			return int(i)
		}
		return -1
	}
	for i := range n {
		if keyMatches(at(i), k) {
			return i
		}
	}
	return -1
}

// added records that the key at position n-1 is k, building the map once
// the container outgrows a linear scan.
func (h *hindex) added(k hkey, n int, at func(int) any) {
	if h.m != nil {
		h.m[k] = int32(n - 1)
		return
	}
	if n <= smallIndex {
		return
	}
	h.m = make(map[hkey]int32, 2*n)
	for i := range n - 1 {
		if hk, err := hashKey(at(i), 0); err == nil {
			h.m[hk] = int32(i)
		}
	}
	h.m[k] = int32(n - 1)
}

// keyMatches reports whether key (a stored key) has the hash key k.
func keyMatches(key any, k hkey) bool {
	switch key := key.(type) {
	case string:
		return k.str && key == k.s
	case int64:
		if k.str || len(k.s) < 2 || k.s[0] != 'i' {
			return false
		}
		n, err := strconv.ParseInt(k.s[1:], 10, 64)
		return err == nil && n == key
	}
	if k.str {
		return false
	}
	hk, err := hashKey(key, 0)
	return err == nil && hk == k
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
