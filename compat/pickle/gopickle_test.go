package pickle

import (
	"fmt"
	"math/big"
	"testing"

	gopickle "github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// fromGopickle converts what gopickle's unpickler returns into this
// package's values, for the kinds both handle the same way; ok is false for
// anything else (its Python 2 str, datetime, objects...).
func fromGopickle(v any) (out any, ok bool) {
	switch x := v.(type) {
	case nil, bool, float64:
		return x, true
	case int:
		return int64(x), true
	case *big.Int:
		return normInt(x), true
	case string:
		return x, true
	case []byte:
		return Bytes(x), true
	case *types.List:
		return convSlice(*x)
	case *types.Tuple:
		s, ok := convSlice(*x)
		if !ok {
			return nil, false
		}
		return Tuple(s.([]any)), true
	case *types.Dict:
		d := NewDict()
		for _, e := range *x {
			k, ok1 := fromGopickle(e.Key)
			val, ok2 := fromGopickle(e.Value)
			if !ok1 || !ok2 || d.Set(k, val) != nil {
				return nil, false
			}
		}
		return d, true
	}
	return nil, false
}

func convSlice(items []any) (any, bool) {
	out := make([]any, len(items))
	for i, it := range items {
		v, ok := fromGopickle(it)
		if !ok {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func gopickleLoads(p []byte) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gopickle panicked: %v", r)
		}
	}()
	return gopickle.Loads(string(p))
}

// TestAgainstGopickle uses gopickle's unpickler as a second opinion on the
// Python-made vectors of the kinds it decodes completely (numbers, text,
// bytes, lists, tuples, dicts) at protocols 1 to 5 (at protocol 0 it leaves
// UNICODE's raw-unicode-escape undone): both must give the same values.
func TestAgainstGopickle(t *testing.T) {
	compared := 0
	for _, v := range loadVectors(t) {
		if v.Source != "python3" || v.Protocol == 0 {
			continue
		}
		raw := rawPickle(t, v)
		theirs, err := gopickleLoads(raw)
		if err != nil {
			continue
		}
		conv, ok := fromGopickle(theirs)
		if !ok {
			continue
		}
		ours, err := Unpickle(raw)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if !equalValue(ours, conv) {
			t.Errorf("%s: ours %s, gopickle's %s", v.Name, goString(ours), goString(conv))
		}
		compared++
	}
	if compared < 40 {
		t.Fatalf("only %d vectors compared with gopickle", compared)
	}
	t.Logf("%d vectors agree with gopickle", compared)
}
