package djangodb

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// errBadTimestamp is wrapped by parse errors so that callers can tell a
// corrupt timestamp from a database failure.
var errBadTimestamp = errors.New("bad timestamp")

// djangoTime converts between instants and the naive text Django's SQLite
// backend stores in datetime columns: "YYYY-MM-DD HH:MM:SS[.ffffff]", the
// fraction left out when the microseconds are zero (str(datetime)), never an
// offset. The text is wall-clock time in loc: under USE_TZ=True the
// database's TIME_ZONE or UTC, under USE_TZ=False TIME_ZONE. SQLite
// compares these columns as text, so every parameter compared against them
// must be produced by format too.
type djangoTime struct {
	loc *time.Location
}

// newDjangoTime returns the codec Django uses for the given settings:
// with USE_TZ the database's TIME_ZONE (UTC when unset), else TIME_ZONE.
func newDjangoTime(opts Options) djangoTime {
	loc := opts.TimeZone
	if opts.UseTZ {
		loc = opts.DBTimeZone
	}
	if loc == nil {
		loc = time.UTC
	}
	return djangoTime{loc: loc}
}

// format renders t as Django would store it. Sub-microsecond digits are
// dropped: Django's precision is the microsecond and text comparisons would
// otherwise see digits Python never writes.
func (d djangoTime) format(t time.Time) string {
	t = t.In(d.loc)
	b := make([]byte, 0, 26)
	b = t.AppendFormat(b, "2006-01-02 15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = appendPadded(b, us, 6)
	}
	return string(b)
}

func appendPadded(b []byte, v, width int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// tsPattern is what parse accepts: Django's form and what other writers
// (hand-edited rows, sqlite3's datetime(), ISO 8601 tools) put in such
// columns: a 'T' separator, a missing seconds field, 1 to 9 fraction
// digits, a date alone, and a "Z" or ±HH[[:]MM] offset after at most one
// space.
var tsPattern = regexp.MustCompile(`^(\d{4})-(\d\d)-(\d\d)(?:[ Tt](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?(?: ?([Zz]|[+-]\d\d(?::?\d\d)?))?)?$`)

// parse reads a stored timestamp (see tsPattern). Text without an offset
// is wall-clock time in d.loc; during a DST fold the earlier of the two
// instants is taken (Python's fold=0), and a wall time inside a DST gap is
// moved forward by the gap, as time.Date does.
func (d djangoTime) parse(s string) (time.Time, error) {
	m := tsPattern.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, fmt.Errorf("%w %q", errBadTimestamp, s)
	}
	n := func(text string) int {
		v, _ := strconv.Atoi(text) // "" is 0
		return v
	}
	year, month, day, hour, minute, sec := n(m[1]), n(m[2]), n(m[3]), n(m[4]), n(m[5]), n(m[6])
	nsec := n((m[7] + "000000000")[:9])
	loc := d.loc
	switch z := m[8]; {
	case z == "Z" || z == "z":
		loc = time.UTC
	case z != "":
		h, mm := n(z[1:3]), n(strings.TrimPrefix(z[3:], ":"))
		if h > 23 || mm > 59 {
			return time.Time{}, fmt.Errorf("%w %q: offset out of range", errBadTimestamp, s)
		}
		off := h*3600 + mm*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("%w %q: field out of range", errBadTimestamp, s)
	}
	return earliestWithSameWall(time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)), nil
}

// earliestWithSameWall returns the earlier of two instants that share t's
// wall-clock text in a DST fold (Python's fold=0), where time.Date returns
// the later one. Transitions are at least hours apart, so the offsets in
// force six hours around t are the only candidates.
func earliestWithSameWall(t time.Time) time.Time {
	wall := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	best := t
	for _, probe := range []time.Time{t.Add(-6 * time.Hour), t.Add(6 * time.Hour)} {
		_, off := probe.Zone()
		cand := wall.Add(-time.Duration(off) * time.Second).In(t.Location())
		if cand.Before(best) && sameWall(cand, t) {
			best = cand
		}
	}
	return best
}

func sameWall(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd && a.Hour() == b.Hour() && a.Minute() == b.Minute() &&
		a.Second() == b.Second() && a.Nanosecond() == b.Nanosecond()
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
