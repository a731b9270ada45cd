package pickle

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// fuzzSeeds are malformed or unusual pickles beside the vectors.
var fuzzSeeds = []string{
	"", ".", "\x80\x02", "\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00N.",
	"(lp1\n(lp2\nS'x'\naag2\na.", "]q\x00h\x00a.", "}]K\x01s.", "X\xff\xff\xff\xffabc.",
	"S'\\x4'\n.", "V\\ud83d\\ude00\n.", "cdatetime\ndatetime\nU\x03abc\x85R.",
	"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x7f.", "cmy\nC\n)\x81}K\x01K\x02sb.",
	"\x8f(K\x01K\x01\x90.", "(K\x01K\x02d.", "K\x07\x32\x86.",
}

// checkDecoded holds for every value decoding accepted: the JSON view is
// valid JSON or a clean error, and Encode either refuses the value with a
// sentinel or writes a pickle that decodes and encodes to the same bytes.
func checkDecoded(t *testing.T, v any) {
	if js, err := ToJSON(v, JSONMaxBytes(1<<20)); err == nil {
		if !json.Valid(js) {
			t.Fatalf("ToJSON wrote invalid JSON: %q", js)
		}
	} else if !errors.Is(err, ErrRecursive) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ToJSON: %v", err)
	}
	p, err := Pickle(v)
	if err != nil {
		if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrRecursive) {
			t.Fatalf("Pickle of a decoded value: %v", err)
		}
		return
	}
	v2, err := Unpickle(p)
	if err != nil {
		t.Fatalf("Unpickle(Pickle(v)): %v\npickle %q", err, p)
	}
	p2, err := Pickle(v2)
	if err != nil {
		t.Fatalf("Pickle(Unpickle(Pickle(v))): %v", err)
	}
	if !bytes.Equal(p, p2) {
		t.Fatalf("re-encoding changed the pickle:\n%q\n%q", p, p2)
	}
}

func FuzzUnpickle(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(rawPickle(f, v))
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Unpickle(data)
		if err != nil {
			if !errors.Is(err, ErrPickle) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error outside the sentinels: %v", err)
			}
			return
		}
		checkDecoded(t, v)
	})
}

func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.Input)
	}
	for _, s := range fuzzSeeds {
		if enc, err := encodeRaw([]byte(s)); err == nil {
			f.Add(enc)
		}
	}
	f.Add("not base64!")
	f.Add("eJwDAAAAAAE=")
	f.Fuzz(func(t *testing.T, text string) {
		v, err := Decode(text)
		if err != nil {
			if !errors.Is(err, ErrBase64) && !errors.Is(err, ErrZlib) && !errors.Is(err, ErrPickle) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error outside the sentinels: %v", err)
			}
			return
		}
		checkDecoded(t, v)
		if _, err := DecodeAuto([]byte(text)); err != nil {
			t.Fatalf("DecodeAuto refused what Decode accepted: %v", err)
		}
	})
}
