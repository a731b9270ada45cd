package pickle

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchInputScript writes a pickle of at least 1 MiB shaped like a large
// task input (records of strings, numbers, tuples, datetimes, nested
// dicts) with the protocol given as argv[2], to the file argv[1].
const benchInputScript = `
import datetime, pickle, sys
path, proto = sys.argv[1], int(sys.argv[2])
recs, i = [], 0
while True:
    recs.append({
        "id": i,
        "name": "coverage_%06d" % i,
        "bbox": (10.0 + i / 7, 45.5, 11.25, 46.0 + i / 3),
        "time": datetime.datetime(2012, 3, 4, 5, 6, i % 60, i % 999999),
        "bands": ["red", "green", "nir"],
        "size": [i % 4096, 4096],
        "valid": i % 3 != 0,
        "meta": {"crs": "EPSG:4326", "scale": i * 0.5},
    })
    i += 1
    if i % 500 == 0 and len(pickle.dumps(recs, proto)) >= 1 << 20:
        break
open(path, "wb").write(pickle.dumps(recs, proto))
`

// timeitScript prints the best per-call seconds of pickle.loads (or of the
// whole stored-input decoding) over the bytes in argv[1], by the wall
// clock and by process CPU time.
const timeitScript = `
import base64, pickle, sys, time, timeit, zlib
data = open(sys.argv[1], "rb").read()
if sys.argv[2] == "envelope":
    f = lambda: pickle.loads(zlib.decompress(base64.b64decode(data)))
else:
    f = lambda: pickle.loads(data)
n = 5
while timeit.timeit(f, number=n) < 0.2:
    n *= 2
wall = min(timeit.repeat(f, number=n, repeat=5)) / n
cpu = min(timeit.repeat(f, number=n, repeat=5, timer=time.process_time)) / n
print(wall, cpu)
`

type benchInput struct {
	raw      []byte
	envelope string
	pyRaw    pyTimes
	pyEnv    pyTimes
	err      error
}

// pyTimes is Python's best time per call, in nanoseconds.
type pyTimes struct{ wall, cpu float64 }

var benchInputs sync.Map // protocol -> *benchInput (made once per process)

func loadBenchInput(b *testing.B, proto int) *benchInput {
	b.Helper()
	py := pythonPath(b)
	v, _ := benchInputs.LoadOrStore(proto, &benchInput{})
	in := v.(*benchInput)
	if in.raw == nil && in.err == nil {
		dir, err := os.MkdirTemp("", "pickle-bench")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		rawPath := filepath.Join(dir, "input.pickle")
		if out, err := exec.Command(py, "-c", benchInputScript, rawPath, strconv.Itoa(proto)).CombinedOutput(); err != nil {
			b.Fatalf("python3 writing the benchmark input: %v\n%s", err, out)
		}
		if in.raw, err = os.ReadFile(rawPath); err != nil {
			b.Fatal(err)
		}
		if in.envelope, err = encodeRaw(in.raw); err != nil {
			b.Fatal(err)
		}
		envPath := filepath.Join(dir, "input.txt")
		if err := os.WriteFile(envPath, []byte(in.envelope), 0o644); err != nil {
			b.Fatal(err)
		}
		in.pyRaw = pythonTimes(b, py, rawPath, "raw")
		in.pyEnv = pythonTimes(b, py, envPath, "envelope")
	}
	return in
}

func pythonTimes(b *testing.B, py, path, mode string) pyTimes {
	b.Helper()
	out, err := exec.Command(py, "-c", timeitScript, path, mode).CombinedOutput()
	if err != nil {
		b.Fatalf("python3 timeit: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		b.Fatalf("python3 timeit output %q", out)
	}
	var t [2]float64
	for i := range t {
		if t[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			b.Fatalf("python3 timeit output %q: %v", out, err)
		}
	}
	return pyTimes{wall: t[0] * 1e9, cpu: t[1] * 1e9}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs decode b.N times and reports, beside Go's ns/op, Python's
// figures for the same bytes and the ratios: x-python by the wall clock,
// x-python-cpu by CPU time (Go's includes its parallel garbage collector).
// Python's figures are timeit's best of 5 repeats, so the ratios use Go's
// best of 5 runs of b.N/5 iterations (go-ns/op, go-cpu-ns/op); ns/op stays
// the plain mean. The requirement is at most 3x, checked on CPU time: on a
// shared machine the wall clock of runs taken at different moments
// measures the neighbours more than the decoders.
func measure(b *testing.B, py pyTimes, decode func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	parts := min(5, b.N)
	bestWall, bestCPU := math.Inf(1), math.Inf(1)
	done := 0
	for p := range parts {
		n := b.N/parts + btoi(p < b.N%parts)
		w0, c0 := time.Now(), cpuTime(b)
		for range n {
			if err := decode(); err != nil {
				b.Fatal(err)
			}
		}
		bestWall = min(bestWall, float64(time.Since(w0).Nanoseconds())/float64(n))
		bestCPU = min(bestCPU, float64((cpuTime(b)-c0).Nanoseconds())/float64(n))
		done += n
	}
	b.StopTimer()
	if done != b.N {
		b.Fatalf("ran %d of %d iterations", done, b.N)
	}
	b.ReportMetric(bestWall, "go-ns/op")
	b.ReportMetric(bestCPU, "go-cpu-ns/op")
	b.ReportMetric(py.wall, "py-ns/op")
	b.ReportMetric(py.cpu, "py-cpu-ns/op")
	b.ReportMetric(bestWall/py.wall, "x-python")
	b.ReportMetric(bestCPU/py.cpu, "x-python-cpu")
	if b.Elapsed() > 500*time.Millisecond && bestCPU/py.cpu > 3 && os.Getenv("PICKLE_BENCH_NOFAIL") == "" {
		b.Errorf("decoding takes %.2fx python3's CPU time (limit 3x)", bestCPU/py.cpu)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkUnpickle1MiB compares Unpickle with python3's pickle.loads on
// the same 1 MiB pickle.
func BenchmarkUnpickle1MiB(b *testing.B) {
	for _, proto := range []int{0, 2, 5} {
		b.Run(fmt.Sprintf("proto=%d", proto), func(b *testing.B) {
			in := loadBenchInput(b, proto)
			b.SetBytes(int64(len(in.raw)))
			measure(b, in.pyRaw, func() error {
				_, err := Unpickle(in.raw)
				return err
			})
		})
	}
}

// BenchmarkDecode1MiB compares Decode of the stored form with python3's
// pickle.loads(zlib.decompress(base64.b64decode(text))).
func BenchmarkDecode1MiB(b *testing.B) {
	for _, proto := range []int{0, 2, 5} {
		b.Run(fmt.Sprintf("proto=%d", proto), func(b *testing.B) {
			in := loadBenchInput(b, proto)
			b.SetBytes(int64(len(in.raw)))
			measure(b, in.pyEnv, func() error {
				_, err := Decode(in.envelope)
				return err
			})
		})
	}
}

// BenchmarkDecodeSmall is the common case: the reference run's input
// (1, 2, 3, 4, 5) as tracker.enqueueTask stored it.
func BenchmarkDecodeSmall(b *testing.B) {
	const stored = "eJxrYNLwZvRm8mb2ZvFmLSlk0AMAHXMDRA=="
	b.ReportAllocs()
	for range b.N {
		if _, err := Decode(stored); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSmall: a Go producer's typical input.
func BenchmarkEncodeSmall(b *testing.B) {
	v := Tuple{"SequenceSum", []any{1, 2, 3, 4, 5}, map[string]any{"crs": "EPSG:4326"}}
	b.ReportAllocs()
	for range b.N {
		if _, err := Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}
