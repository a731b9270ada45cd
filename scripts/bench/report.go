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

// Those of issue 17; the PostgreSQL Go drain's is also met at 0.55 of the
// batched-SQL limit (limitShare).
var targets = map[string]target{
	"drain/postgres/go/tasks_per_s":          {value: 5000},
	"drain/postgres/python/tasks_per_s":      {value: 1200},
	"drain/postgres/python-few/tasks_per_s":  {value: 400},
	"drain/sqlite/go/tasks_per_s":            {value: 3000},
	"pickup/postgres/notify/p50_ms":          {atMost: true, value: 2},
	"pickup/postgres/poll/p50_ms":            {atMost: true, value: 30},
	"pickup/sqlite/poll/p50_ms":              {atMost: true, value: 30},
	"drain/postgres/go/rss_with_children_mb": {atMost: true, value: 30},
	"drain/sqlite/go/rss_with_children_mb":   {atMost: true, value: 30},
}

// limitShare is the fraction of the batched-SQL limit that meets the
// PostgreSQL Go drain's target as well.
const limitShare = 0.55

// report prints the medians as a Markdown table, with each throughput as a
// fraction of the database's capacity and of the batched-SQL limit
// measured in the same run and as a multiple of the original daemon (the
// one measured in the run, else the reference figure), and the targets
// met or missed.
func (b *bench) report(w io.Writer, took time.Duration) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "atpd bench: %d runs, median; %d tasks per drain, %d Go workers, %d Python workers, %d pickup samples per run; %d CPUs, host %s; took %v\n\n",
		b.o.runs, b.o.tasks, b.o.goWorkers, b.o.pyWorkers, b.o.samples, numCPU(), host, took.Round(time.Second))
	fmt.Fprintln(w, "| measurement | median | runs | vs database capacity | vs batched-SQL limit | vs original daemon | target |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---|")
	capPG, capSQ, capWAL := median(b.results["capacity/postgres"]), median(b.results["capacity/sqlite"]), median(b.results["capacity/sqlite-wal"])
	limit := median(b.results["limit/postgres/batched/tasks_per_s"])
	orig, origNote := median(b.results["original/postgres/python/tasks_per_s"]), "measured in this run"
	if orig == 0 {
		orig, origNote = refThroughput, fmt.Sprintf("the reference figure, %.0f tasks/s (not measured in this run)", refThroughput)
	}
	for _, name := range b.order {
		vs := b.results[name]
		m := median(vs)
		var runs []string
		for _, v := range vs {
			runs = append(runs, trim(v))
		}
		var ofCap, ofLimit, ofRef, tgt string
		switch {
		case strings.HasPrefix(name, "drain/") && strings.HasSuffix(name, "/tasks_per_s"):
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
			if limit > 0 {
				ofLimit = fmt.Sprintf("%.2f", m/limit)
			}
			ofRef = fmt.Sprintf("%.0f×", m/orig)
		case strings.HasSuffix(name, "/p50_ms"):
			ofRef = fmt.Sprintf("1/%.0f", float64(refPickup.Milliseconds())/m)
		}
		if t, ok := targets[name]; ok {
			met := m >= t.value
			if name == "drain/postgres/go/tasks_per_s" && limit > 0 && m >= limitShare*limit {
				met = true
			}
			cmp := "≥"
			if t.atMost {
				met, cmp = m <= t.value, "≤"
			}
			verdict := "missed"
			if met {
				verdict = "met"
			}
			tgt = fmt.Sprintf("%s %s: %s", cmp, trim(t.value), verdict)
			if name == "drain/postgres/go/tasks_per_s" {
				tgt = fmt.Sprintf("≥ %s or ≥ %.2f of the limit: %s", trim(t.value), limitShare, verdict)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", name, trim(m), strings.Join(runs, ", "), ofCap, ofLimit, ofRef, tgt)
	}
	fmt.Fprintf(w, "\nOriginal daemon: %s. Pickup reference: the Python daemon's median of %v on this machine class.\n", origNote, refPickup)
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
