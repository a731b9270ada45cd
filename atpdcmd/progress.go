package atpdcmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows how far the demo is on stderr: on a terminal, one line
// redrawn in place (a bar); elsewhere (a pipe, a log file, CI), a plain
// line now and then, because carriage returns make a mess of those.
//
// Log lines are written through it (it is an io.Writer), so that on a
// terminal a log line replaces the bar instead of being glued to it, and
// the bar is drawn again below.
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration // between plain lines

	mu        sync.Mutex
	last      string // the bar as last drawn; "" when none is shown
	lastPlain time.Time
}

// barWidth is the bar's length in characters; the whole line stays within
// 80 columns.
const barWidth = 30

func newProgress(w io.Writer, every time.Duration) *progress {
	return &progress{w: w, tty: isTerminal(w), every: every}
}

// isTerminal reports whether w is a character device that understands the
// erase-line sequence.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	return os.Getenv("TERM") != "dumb"
}

// progressState is one reading of the demo's counters.
type progressState struct {
	done, total      int
	finished, failed int
	waiting          int
	elapsed          time.Duration
}

func (s progressState) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.done) / s.elapsed.Seconds()
}

// update shows s: the bar is redrawn at every call, a plain line at most
// once per every (and always for the last one, final).
func (p *progress) update(s progressState, final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		filled := 0
		if s.total > 0 {
			filled = barWidth * s.done / s.total
		}
		bar := strings.Repeat("#", filled) + strings.Repeat(".", barWidth-filled)
		line := fmt.Sprintf("[%s] %d/%d %3d%% %6.0f tasks/s", bar, s.done, s.total, percent(s.done, s.total), s.rate())
		if s.failed > 0 {
			line += fmt.Sprintf(" %d failed", s.failed)
		}
		fmt.Fprint(p.w, "\r\x1b[K"+line)
		p.last = line
		if final {
			fmt.Fprint(p.w, "\n")
			p.last = ""
		}
		return
	}
	now := time.Now()
	if !final && now.Sub(p.lastPlain) < p.every {
		return
	}
	p.lastPlain = now
	fmt.Fprintf(p.w, "demo: %d/%d tasks done (%d%%): %d finished, %d failed, %d waiting, %.1f tasks/s, %s\n",
		s.done, s.total, percent(s.done, s.total), s.finished, s.failed, s.waiting, s.rate(), s.elapsed.Round(time.Millisecond))
}

func percent(n, total int) int {
	if total <= 0 {
		return 100
	}
	return 100 * n / total
}

// Write prints a log line without mixing it into the bar.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	n, err := p.w.Write(b)
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\x1b[K"+p.last)
	}
	return n, err
}

// clear removes the bar, for output that follows it.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.last = ""
	}
}
