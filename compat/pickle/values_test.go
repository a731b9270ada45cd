package pickle

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"testing"
	"time"
)

// equalValue compares decoded values by meaning: dicts by their entries in
// order, NaN equal to NaN, datetimes by wall clock, offset and naivety,
// nil and empty argument lists alike.
func equalValue(a, b any) bool {
	switch x := a.(type) {
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for i, e := range x.Entries() {
			f := y.Entries()[i]
			if !equalValue(e.Key, f.Key) || !equalValue(e.Value, f.Value) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		return ok && equalSlices(x, y)
	case Tuple:
		y, ok := b.(Tuple)
		return ok && equalSlices(x, y)
	case Set:
		y, ok := b.(Set)
		return ok && equalSlices(x, y)
	case FrozenSet:
		y, ok := b.(FrozenSet)
		return ok && equalSlices(x, y)
	case float64:
		y, ok := b.(float64)
		return ok && (x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y))
	case *big.Int:
		y, ok := b.(*big.Int)
		return ok && x.Cmp(y) == 0
	case Bytes:
		y, ok := b.(Bytes)
		return ok && bytes.Equal(x, y)
	case DateTime:
		y, ok := b.(DateTime)
		if !ok || x.Naive != y.Naive || !x.Time.Equal(y.Time) {
			return false
		}
		xn, xo := x.Zone()
		yn, yo := y.Zone()
		return xn == yn && xo == yo
	case *Object:
		y, ok := b.(*Object)
		return ok && x.Module == y.Module && x.Name == y.Name && x.NewObj == y.NewObj &&
			equalSlices(x.Args, y.Args) && equalValue(x.State, y.State) &&
			equalSlices(x.ListItems, y.ListItems) &&
			equalValue(dictOrNil(x.Kwargs), dictOrNil(y.Kwargs)) &&
			equalValue(dictOrNil(x.DictItems), dictOrNil(y.DictItems))
	}
	return reflect.DeepEqual(a, b)
}

func dictOrNil(d *Dict) any {
	if d.Len() == 0 {
		return nil
	}
	return d
}

func equalSlices(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equalValue(a[i], b[i]) {
			return false
		}
	}
	return true
}

func dict(t testing.TB, kv ...any) *Dict {
	t.Helper()
	d := NewDict()
	for i := 0; i < len(kv); i += 2 {
		if err := d.Set(kv[i], kv[i+1]); err != nil {
			t.Fatalf("dict: %v", err)
		}
	}
	return d
}

func bigInt(t testing.TB, s string) *big.Int {
	t.Helper()
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad big int %q", s)
	}
	return b
}

// TestPython2Values checks the Go values (not only their JSON) of the
// hand-written Python 2 pickles: a Python 2 str is a Go string of its
// bytes, long is int64 or *big.Int, datetimes carry their zone.
func TestPython2Values(t *testing.T) {
	when := time.Date(2012, 3, 4, 5, 6, 7, 890000, time.UTC)
	py2dict := dict(t,
		"name", "caf\xc3\xa9",
		"raw", "\xff\x00",
		"u", "café €\\\n",
		"n", int64(5),
		"big", bigInt(t, "12345678901234567890"),
		"neg", int64(-3),
		"f", 1.5,
		"t", true,
		"none", nil,
		"when", DateTime{Time: when, Naive: true},
	)
	state := dict(t, "a", int64(1))
	want := map[string]any{
		"py2_p0_dict":               py2dict,
		"py2_p2_dict":               py2dict,
		"py2_p0_str_escapes":        Tuple{"it's", `say "hi"`, "tab\there", `\`, "\x7f\x80", `both ' and "`, "nul\x00"},
		"py2_p0_unicode_surrogates": "😀 ok",
		"py2_p0_old_style_instance": &Object{Module: "__main__", Name: "Old", NewObj: true, State: state},
		"py2_p0_new_style_instance": &Object{Module: "__main__", Name: "New", NewObj: true, State: state},
		"py2_p2_new_style_instance": &Object{Module: "__main__", Name: "New", NewObj: true, State: state},
		"py2_p0_set_decimal":        Tuple{Set{int64(1), int64(2)}, Decimal("1.10")},
		"py2_p2_longs": []any{int64(-1), int64(-256), bigInt(t, "18446744073709551616"),
			bigInt(t, "-18446744073709551616"), int64(255), int64(0)},
		"py2_p0_floats":            []any{0.1, math.NaN(), math.Inf(1), math.Inf(-1)},
		"py2_p2_unicode_keys":      dict(t, "kéy", "v", "k", int64(1)),
		"py2_p2_datetime_pytz_utc": DateTime{Time: when},
		"py2_p2_datetime_pytz_zone": DateTime{Time: time.Date(2012, 3, 4, 5, 6, 7, 890000,
			time.FixedZone("CET", 3600))},
		"py2_p2_date_time_delta": Tuple{Date{2012, 3, 4}, Time{Hour: 5, Minute: 6, Second: 7, Microsecond: 890},
			Timedelta{Days: -1, Seconds: 3600, Microseconds: 5}},
		"py2_p2_ordered_dict":      dict(t, "z", int64(1), "a", int64(2)),
		"py2_p0_complex_frozenset": Tuple{complex(1, 2), FrozenSet{"a"}, "café"},
		"py2_p0_memo_get":          []any{[]any{"x"}, []any{"x"}},
	}
	seen := 0
	for _, v := range loadVectors(t) {
		w, ok := want[v.Name]
		if !ok {
			continue
		}
		seen++
		t.Run(v.Name, func(t *testing.T) {
			got, err := Decode(v.Input)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalValue(got, w) {
				t.Fatalf("got  %s\nwant %s", goString(got), goString(w))
			}
		})
	}
	if seen != len(want) {
		t.Fatalf("found %d of the %d python2 vectors in testdata", seen, len(want))
	}
}

// TestMemoSharing: a value stored once and fetched from the memo twice is
// one Go value, as it is one Python object.
func TestMemoSharing(t *testing.T) {
	got, err := Unpickle([]byte("(lp1\n(lp2\nS'x'\naag2\na."))
	if err != nil {
		t.Fatal(err)
	}
	l := got.([]any)
	a, b := l[0].([]any), l[1].([]any)
	if &a[0] != &b[0] {
		t.Fatal("the memoised list was copied instead of shared")
	}
}

// TestGoTypes pins the Go type of each kind of Python value, which JSON
// cannot show (tuple and list are both arrays, 2**63 and 2**63-1 both
// numbers).
func TestGoTypes(t *testing.T) {
	byName := map[string]vector{}
	for _, v := range loadVectors(t) {
		byName[v.Name] = v
	}
	cases := []struct {
		vector string
		path   []int
		want   any // a value of the wanted type
	}{
		{"int64_edges_p2", []int{2}, int64(0)},
		{"big_ints_p2", []int{0}, (*big.Int)(nil)},
		{"big_ints_p0", []int{0}, (*big.Int)(nil)},
		{"floats_p0", []int{2}, float64(0)},
		{"bytes_p2", []int{1}, Bytes(nil)},
		{"bytes_p3", []int{1}, Bytes(nil)},
		{"bytearray_p5", nil, Bytes(nil)},
		{"tuples_p2", []int{4}, Tuple(nil)},
		{"lists_p4", []int{1}, []any(nil)},
		{"sets_p1", []int{0}, Set(nil)},
		{"sets_p4", []int{3}, FrozenSet(nil)},
		{"datetimes_p3", []int{0}, DateTime{}},
		{"dates_times_p4", []int{0}, Date{}},
		{"dates_times_p4", []int{1}, Time{}},
		{"timedeltas_p5", []int{0}, Timedelta{}},
		{"decimals_p0", []int{0}, Decimal("")},
		{"complex_p2", []int{0}, complex128(0)},
		{"ordered_dict_p1", nil, (*Dict)(nil)},
		{"object_state_p3", nil, (*Object)(nil)},
		{"class_reference_p4", []int{0}, Global{}},
		{"strings_p0", []int{2}, ""},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s%v", c.vector, c.path), func(t *testing.T) {
			v, ok := byName[c.vector]
			if !ok {
				t.Fatalf("no vector %s", c.vector)
			}
			got, err := Decode(v.Input)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range c.path {
				got = reflect.ValueOf(got).Index(i).Interface()
			}
			if reflect.TypeOf(got) != reflect.TypeOf(c.want) {
				t.Fatalf("got %T, want %T", got, c.want)
			}
		})
	}
}

// TestAwareDateTimes checks zones of the Python 3 aware datetimes.
func TestAwareDateTimes(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.Name != "aware_datetimes_p2" && v.Name != "aware_datetimes_p5" {
			continue
		}
		got, err := Decode(v.Input)
		if err != nil {
			t.Fatal(err)
		}
		want := []any{
			DateTime{Time: time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)},
			DateTime{Time: time.Date(2024, 6, 1, 12, 0, 0, 0, time.FixedZone("", 7200))},
			DateTime{Time: time.Date(2024, 6, 1, 12, 0, 0, 0, time.FixedZone("", -19800))},
		}
		if !equalValue(got, want) {
			t.Fatalf("%s: got %s", v.Name, goString(got))
		}
	}
}

func goString(v any) string {
	b, err := ToJSON(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return fmt.Sprintf("%T %s", v, b)
}
