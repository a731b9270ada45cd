package djangodb

import (
	"errors"
	"testing"
	"time"
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load time zone %s: %v", name, err)
	}
	return loc
}

func TestDjangoTimeFormat(t *testing.T) {
	vienna := mustLoad(t, "Europe/Vienna")
	utcCodec := newDjangoTime(Options{UseTZ: true, TimeZone: vienna})
	localCodec := newDjangoTime(Options{UseTZ: false, TimeZone: vienna})
	tests := []struct {
		name  string
		codec djangoTime
		in    time.Time
		want  string
	}{
		{"utc with micros", utcCodec, time.Date(2026, 11, 26, 23, 14, 21, 163387000, time.UTC), "2026-11-26 23:14:21.163387"},
		{"utc zero micros omits fraction", utcCodec, time.Date(2026, 11, 26, 23, 14, 21, 0, time.UTC), "2026-11-26 23:14:21"},
		{"sub-microsecond digits dropped", utcCodec, time.Date(2026, 1, 2, 3, 4, 5, 999, time.UTC), "2026-01-02 03:04:05"},
		{"leading zeros of fraction kept", utcCodec, time.Date(2026, 1, 2, 3, 4, 5, 1000, time.UTC), "2026-01-02 03:04:05.000001"},
		{"use_tz converts a local instant to utc", utcCodec, time.Date(2026, 7, 1, 12, 0, 0, 500000000, vienna), "2026-07-01 10:00:00.500000"},
		{"local winter +01", localCodec, time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC), "2026-01-15 11:00:00"},
		{"local summer +02", localCodec, time.Date(2026, 7, 15, 10, 0, 0, 0, time.UTC), "2026-07-15 12:00:00"},
		// 2026-03-29 01:00 UTC Vienna jumps from 02:00 to 03:00.
		{"local before spring gap", localCodec, time.Date(2026, 3, 29, 0, 59, 59, 999999000, time.UTC), "2026-03-29 01:59:59.999999"},
		{"local after spring gap", localCodec, time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), "2026-03-29 03:00:00"},
		// 2026-10-25 01:00 UTC Vienna falls back from 03:00 to 02:00: two
		// instants an hour apart render the same text.
		{"local fold first pass", localCodec, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), "2026-10-25 02:30:00"},
		{"local fold second pass", localCodec, time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), "2026-10-25 02:30:00"},
		{"nil time zone is utc", newDjangoTime(Options{}), time.Date(2026, 1, 15, 10, 0, 0, 0, vienna), "2026-01-15 09:00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.codec.format(tt.in); got != tt.want {
				t.Errorf("format(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDjangoTimeParse(t *testing.T) {
	vienna := mustLoad(t, "Europe/Vienna")
	utcCodec := newDjangoTime(Options{UseTZ: true})
	localCodec := newDjangoTime(Options{UseTZ: false, TimeZone: vienna})
	tests := []struct {
		name  string
		codec djangoTime
		in    string
		want  time.Time
	}{
		{"django micros", utcCodec, "2026-11-26 23:14:21.163387", time.Date(2026, 11, 26, 23, 14, 21, 163387000, time.UTC)},
		{"django no fraction", utcCodec, "2026-11-26 23:14:21", time.Date(2026, 11, 26, 23, 14, 21, 0, time.UTC)},
		{"T separator", utcCodec, "2026-11-26T23:14:21.5", time.Date(2026, 11, 26, 23, 14, 21, 500000000, time.UTC)},
		{"nanoseconds", utcCodec, "2026-11-26 23:14:21.123456789", time.Date(2026, 11, 26, 23, 14, 21, 123456789, time.UTC)},
		{"no seconds", utcCodec, "2026-11-26 23:14", time.Date(2026, 11, 26, 23, 14, 0, 0, time.UTC)},
		{"date only", utcCodec, "2026-11-26", time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)},
		{"Z suffix", localCodec, "2026-11-26 23:14:21Z", time.Date(2026, 11, 26, 23, 14, 21, 0, time.UTC)},
		{"offset with colon", utcCodec, "2026-11-26 23:14:21.25+01:00", time.Date(2026, 11, 26, 22, 14, 21, 250000000, time.UTC)},
		{"offset without colon", utcCodec, "2026-11-26 23:14:21-0130", time.Date(2026, 11, 27, 0, 44, 21, 0, time.UTC)},
		{"offset hours only", utcCodec, "2026-11-26 23:14:21+05", time.Date(2026, 11, 26, 18, 14, 21, 0, time.UTC)},
		{"offset after a space", utcCodec, "2026-11-26 23:14:21 +00:00", time.Date(2026, 11, 26, 23, 14, 21, 0, time.UTC)},
		{"offset overrides local zone", localCodec, "2026-07-01 12:00:00+00:00", time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)},
		{"local winter", localCodec, "2026-01-15 11:00:00", time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)},
		{"local summer", localCodec, "2026-07-15 12:00:00.000001", time.Date(2026, 7, 15, 10, 0, 0, 1000, time.UTC)},
		{"local after spring gap", localCodec, "2026-03-29 03:00:00", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)},
		{"local inside spring gap moves forward", localCodec, "2026-03-29 02:30:00", time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)},
		{"local fold takes the earlier instant", localCodec, "2026-10-25 02:30:00", time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)},
		{"local after fold", localCodec, "2026-10-25 03:00:00", time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC)},
		{"leap day", utcCodec, "2024-02-29 00:00:00", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.codec.parse(tt.in)
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("parse(%q) = %v, want %v", tt.in, got.UTC(), tt.want.UTC())
			}
		})
	}
}

func TestDjangoTimeParseRejects(t *testing.T) {
	codec := newDjangoTime(Options{UseTZ: true})
	for _, in := range []string{
		"",
		"2026",
		"2026-11",
		"2026-11-26 ",
		"2026-11-26 23",
		"2026-11-26 23:14:21.",
		"2026-11-26 23:14:21.1234567890",
		"2026-11-26 23:14:21 junk",
		"2026-11-26 23:14:21+",
		"2026-11-26 23:14:21+1",
		"2026-11-26 23:14:21+25:00",
		"2026-13-01 00:00:00",
		"2026-02-29 00:00:00",
		"2026-11-31 00:00:00",
		"2026-11-26 24:00:00",
		"2026-11-26 23:60:00",
		"2026-11-26 23:14:60",
		"2026/11/26 23:14:21",
		"２026-11-26 23:14:21",
		"1764198861",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := codec.parse(in)
			if !errors.Is(err, errBadTimestamp) {
				t.Errorf("parse(%q) = %v, %v; want errBadTimestamp", in, got, err)
			}
		})
	}
}

// TestDjangoTimeRoundTrip checks that what format writes parse reads back as
// the same instant, every 20 minutes across both 2026 Vienna transitions,
// except where the local text is ambiguous (the fold hour's second pass).
func TestDjangoTimeRoundTrip(t *testing.T) {
	vienna := mustLoad(t, "Europe/Vienna")
	for _, c := range []struct {
		name  string
		codec djangoTime
	}{
		{"use_tz", newDjangoTime(Options{UseTZ: true, TimeZone: vienna})},
		{"local", newDjangoTime(Options{TimeZone: vienna})},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, start := range []time.Time{
				time.Date(2026, 3, 28, 22, 0, 0, 123456000, time.UTC),
				time.Date(2026, 10, 24, 22, 0, 0, 0, time.UTC),
			} {
				for i := 0; i < 18; i++ {
					in := start.Add(time.Duration(i) * 20 * time.Minute)
					text := c.codec.format(in)
					got, err := c.codec.parse(text)
					if err != nil {
						t.Fatalf("parse(format(%v) = %q): %v", in, text, err)
					}
					if !got.Equal(in) {
						_, inOff := in.In(vienna).Zone()
						_, gotOff := got.In(vienna).Zone()
						ambiguous := c.codec.loc != time.UTC && inOff != gotOff && got.In(vienna).Format(time.DateTime) == in.In(vienna).Format(time.DateTime)
						if !ambiguous {
							t.Errorf("round trip of %v via %q gave %v", in, text, got)
						}
					}
				}
			}
		})
	}
}

// TestDjangoTimeTextOrder checks the property SQL comparisons rely on: for
// instants in one UTC offset, text order is time order, also when one of the
// two has no fraction.
func TestDjangoTimeTextOrder(t *testing.T) {
	codec := newDjangoTime(Options{UseTZ: true})
	base := time.Date(2026, 5, 5, 5, 5, 5, 0, time.UTC)
	steps := []time.Duration{0, time.Microsecond, 10 * time.Microsecond, 999999 * time.Microsecond, time.Second, time.Second + time.Microsecond, time.Minute, 24 * time.Hour}
	for _, a := range steps {
		for _, b := range steps {
			ta, tb := base.Add(a), base.Add(b)
			sa, sb := codec.format(ta), codec.format(tb)
			if (sa < sb) != ta.Before(tb) || (sa == sb) != ta.Equal(tb) {
				t.Errorf("text order of %q and %q disagrees with time order of %v and %v", sa, sb, ta, tb)
			}
		}
	}
}
