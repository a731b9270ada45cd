package zlibpy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pyServer answers compression requests with CPython's zlib: strategy 0
// through zlib.compress(data), the very call the tracker makes, others
// (Z_HUFFMAN_ONLY for TestLengthLimitRepair) through compressobj at the
// default level, as zlib.compress has no strategy parameter. It runs until
// its stdin closes, so a crashed test binary does not leave it behind.
const pyServer = `
import struct, sys, zlib
r, w = sys.stdin.buffer, sys.stdout.buffer
w.write(zlib.ZLIB_RUNTIME_VERSION.encode().ljust(16)); w.flush()
while True:
    head = r.read(5)
    if len(head) < 5:
        break
    strategy, n = struct.unpack(">BI", head)
    data = r.read(n)
    if strategy == 0:
        z = zlib.compress(data)
    else:
        co = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, strategy)
        z = co.compress(data) + co.flush()
    w.write(struct.pack(">I", len(z))); w.write(z); w.flush()
`

// zHuffmanOnly is zlib's Z_HUFFMAN_ONLY strategy number.
const zHuffmanOnly = 2

// pyZlib is one python3 process serving pyServer.
type pyZlib struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	version string
}

var (
	pyOnce sync.Once
	py     *pyZlib
	pyErr  error
)

// pythonPath is the interpreter the project's tests use (see internal/testdb);
// only its zlib module is needed here.
func pythonPath() string {
	if p := os.Getenv("ATPD_TEST_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

func startPython() (*pyZlib, error) {
	path := pythonPath()
	cmd := exec.Command(path, "-c", pyServer)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &pyZlib{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<16)}
	var v [16]byte
	if _, err := io.ReadFull(p.out, v[:]); err != nil {
		p.close()
		return nil, fmt.Errorf("%s: no zlib version: %w", path, err)
	}
	p.version = strings.TrimSpace(string(v[:]))
	return p, nil
}

// pythonZlib returns the shared server. Without one the calling test is
// skipped, except in CI, where the differential tests are the point.
func pythonZlib(t testing.TB) *pyZlib {
	t.Helper()
	p, err := tryPythonZlib()
	if err != nil {
		if ok, _ := strconv.ParseBool(os.Getenv("CI")); ok {
			t.Fatalf("python3 zlib needed for the differential test (CI=true): %v", err)
		}
		t.Skipf("python3 zlib unavailable: %v", err)
	}
	return p
}

func tryPythonZlib() (*pyZlib, error) {
	pyOnce.Do(func() { py, pyErr = startPython() })
	return py, pyErr
}

// compress returns CPython's zlib.compress(data).
func (p *pyZlib) compress(data []byte) ([]byte, error) { return p.request(0, data) }

// request returns CPython's output for data with zlib strategy strat at the
// default level.
func (p *pyZlib) request(strat byte, data []byte) ([]byte, error) {
	if len(data) > 1<<31 {
		return nil, errors.New("input too large for the python protocol")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var head [5]byte
	head[0] = strat
	binary.BigEndian.PutUint32(head[1:], uint32(len(data)))
	if _, err := p.in.Write(head[:]); err != nil {
		return nil, fmt.Errorf("python: write request: %w", err)
	}
	if _, err := p.in.Write(data); err != nil {
		return nil, fmt.Errorf("python: write request: %w", err)
	}
	var n [4]byte
	if _, err := io.ReadFull(p.out, n[:]); err != nil {
		return nil, fmt.Errorf("python: read reply: %w", err)
	}
	z := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(p.out, z); err != nil {
		return nil, fmt.Errorf("python: read reply: %w", err)
	}
	return z, nil
}

func (p *pyZlib) close() {
	p.in.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if py != nil {
		py.close()
	}
	os.Exit(code)
}

// describeMismatch says where two streams part, for failure messages.
func describeMismatch(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("got %d bytes, want %d; first difference at byte %d", len(got), len(want), i)
}
