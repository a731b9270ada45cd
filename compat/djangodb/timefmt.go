package djangodb

import (
	"errors"
	"fmt"
	"strconv"
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

// parse reads a stored timestamp. Besides Django's form it accepts what
// other writers (hand-edited rows, sqlite3's datetime(), ISO 8601 tools) put
// in such columns: a 'T' separator, a missing seconds field, 1 to 9
// fraction digits, a date alone, and a "Z" or ±HH[:MM] offset. Text without
// an offset is wall-clock time in d.loc; during a DST fold the earlier of
// the two instants is taken (Python's fold=0), and a wall time inside a DST
// gap is moved forward by the gap, as time.Date does.
func (d djangoTime) parse(s string) (time.Time, error) {
	p := tsParser{s: s}
	year := p.digits(4)
	p.expect('-')
	month := p.digits(2)
	p.expect('-')
	day := p.digits(2)
	var hour, minute, sec, nsec int
	loc := d.loc
	if p.more() {
		if c := p.peek(); c == ' ' || c == 'T' || c == 't' {
			p.i++
		} else {
			p.fail()
		}
		hour = p.digits(2)
		p.expect(':')
		minute = p.digits(2)
		if p.more() && p.peek() == ':' {
			p.i++
			sec = p.digits(2)
			if p.more() && (p.peek() == '.' || p.peek() == ',') {
				p.i++
				nsec = p.fraction()
			}
		}
		if p.more() {
			loc = p.offset()
		}
	}
	if p.err == nil && p.more() {
		p.fail()
	}
	if p.err != nil {
		return time.Time{}, fmt.Errorf("%w %q", errBadTimestamp, s)
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("%w %q: field out of range", errBadTimestamp, s)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	return earliestWithSameWall(t), nil
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

// tsParser is a tiny cursor over a timestamp; the first failure sticks so
// that parse can read the fields straight through and check once.
type tsParser struct {
	s   string
	i   int
	err error
}

func (p *tsParser) more() bool { return p.err == nil && p.i < len(p.s) }
func (p *tsParser) peek() byte { return p.s[p.i] }
func (p *tsParser) fail()      { p.err = errBadTimestamp }

func (p *tsParser) expect(c byte) {
	if p.err != nil {
		return
	}
	if p.i >= len(p.s) || p.s[p.i] != c {
		p.fail()
		return
	}
	p.i++
}

func (p *tsParser) digits(n int) int {
	if p.err != nil {
		return 0
	}
	if p.i+n > len(p.s) {
		p.fail()
		return 0
	}
	v := 0
	for _, c := range []byte(p.s[p.i : p.i+n]) {
		if c < '0' || c > '9' {
			p.fail()
			return 0
		}
		v = v*10 + int(c-'0')
	}
	p.i += n
	return v
}

// fraction reads 1 to 9 digits as nanoseconds.
func (p *tsParser) fraction() int {
	start := p.i
	v := 0
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		if p.i-start == 9 {
			p.fail()
			return 0
		}
		v = v*10 + int(p.s[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 {
		p.fail()
		return 0
	}
	for ; n < 9; n++ {
		v *= 10
	}
	return v
}

// offset reads "Z" or ±HH[[:]MM], allowing one space before it (sqlite's
// and PostgreSQL's text forms put none, some tools put one).
func (p *tsParser) offset() *time.Location {
	if p.peek() == ' ' {
		p.i++
		if !p.more() {
			p.fail()
			return nil
		}
	}
	switch c := p.peek(); c {
	case 'Z', 'z':
		p.i++
		return time.UTC
	case '+', '-':
		p.i++
		h := p.digits(2)
		m := 0
		if p.more() {
			if p.peek() == ':' {
				p.i++
			}
			m = p.digits(2)
		}
		if p.err != nil || h > 23 || m > 59 {
			p.fail()
			return nil
		}
		off := h*3600 + m*60
		if c == '-' {
			off = -off
		}
		return time.FixedZone("", off)
	default:
		p.fail()
		return nil
	}
}
