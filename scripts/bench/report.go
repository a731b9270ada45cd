package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// target is a figure the issue asks for.
type target struct {
	atMost bool
	value  float64
}

var targets = map[string]target{
	"drain/postgres/go/tasks_per_s":     {value: 1500},
	"drain/postgres/python/tasks_per_s": {value: 600},
	"drain/sqlite/go/tasks_per_s":       {value: 800},
	"pickup/postgres/notify/p50_ms":     {atMost: true, value: 10},
	"pickup/postgres/poll/p50_ms":       {atMost: true, value: 60},
	"pickup/sqlite/poll/p50_ms":         {atMost: true, value: 60},
	"drain/postgres/go/rss_mb":          {atMost: true, value: 40},
	"drain/sqlite/go/rss_mb":            {atMost: true, value: 40},
}

// report prints the medians as a Markdown table, with each throughput as a
// fraction of the database's capacity measured in the same run and as a
// multiple of the reference daemon, and the targets met or missed.
func (b *bench) report(w io.Writer, took time.Duration) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "atpd bench: %d runs, median; %d tasks per drain, %d Go workers, %d Python workers, %d pickup samples per run; %d CPUs, host %s; took %v\n\n",
		b.o.runs, b.o.tasks, b.o.goWorkers, b.o.pyWorkers, b.o.samples, numCPU(), host, took.Round(time.Second))
	fmt.Fprintln(w, "| measurement | median | runs | vs database capacity | vs reference daemon | target |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---|")
	capPG, capSQ, capWAL := median(b.results["capacity/postgres"]), median(b.results["capacity/sqlite"]), median(b.results["capacity/sqlite-wal"])
	for _, name := range b.order {
		vs := b.results[name]
		m := median(vs)
		var runs []string
		for _, v := range vs {
			runs = append(runs, trim(v))
		}
		var ofCap, ofRef, tgt string
		switch {
		case strings.HasSuffix(name, "/tasks_per_s"):
			c := capPG
			switch {
			case strings.Contains(name, "/sqlite/"):
				c = capSQ
			case strings.Contains(name, "/sqlite-wal/"):
				c = capWAL
			}
			if c > 0 {
				ofCap = fmt.Sprintf("%.2f", m/c)
			}
			ofRef = fmt.Sprintf("%.0f×", m/refThroughput)
		case strings.HasSuffix(name, "/p50_ms"):
			ofRef = fmt.Sprintf("1/%.0f", float64(refPickup.Milliseconds())/m)
		}
		if t, ok := targets[name]; ok {
			met := m >= t.value
			cmp := "≥"
			if t.atMost {
				met, cmp = m <= t.value, "≤"
			}
			verdict := "missed"
			if met {
				verdict = "met"
			}
			tgt = fmt.Sprintf("%s %s: %s", cmp, trim(t.value), verdict)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, trim(m), strings.Join(runs, ", "), ofCap, ofRef, tgt)
	}
	fmt.Fprintf(w, "\nReference: the Python daemon with 2 workers, %.0f tasks/s and a median pickup of %v on this machine class.\n", refThroughput, refPickup)
}

func trim(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
