package web_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A minimal Chrome DevTools Protocol client over a hand-rolled WebSocket
// (RFC 6455, client side: masked text frames out, unmasked frames in), so
// that the browser test needs nothing beyond the standard library.

const chromiumPath = "/usr/bin/chromium"

// browser is a headless Chromium with one page under remote control.
type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	conn   net.Conn
	r      *bufio.Reader
	wmu    sync.Mutex
	nextID int

	mu      sync.Mutex
	waiting map[int]chan cdpMessage
	events  chan cdpMessage
	readErr error
	done    chan struct{}
}

type cdpMessage struct {
	ID     int             `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser starts Chromium, or skips (fails in CI) when it is missing.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if ok, _ := strconv.ParseBool(os.Getenv("CI")); ok {
			t.Fatalf("%s: %v (CI=true: install Debian's chromium package)", chromiumPath, err)
		}
		t.Skipf("%s not installed (apt-get install chromium); skipping the browser test", chromiumPath)
	}
	// Not t.TempDir: Chromium's helper processes may still write into the
	// profile for a moment after the browser is killed, and TempDir's
	// cleanup fails the test on a directory that is not empty.
	profile, err := os.MkdirTemp("", "atpd-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"about:blank")
	// Its own process group, so that the renderers and helpers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := os.RemoveAll(profile)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Logf("chromium profile %s left behind: %v", profile, err)
				}
				break
			}
		}
	})
	// Chromium announces its endpoint on stderr once it listens.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if _, u, ok := strings.Cut(line, "DevTools listening on "); ok {
				found <- strings.TrimSpace(u)
			}
		}
		close(found)
	}()
	var wsURL string
	select {
	case u, ok := <-found:
		if !ok {
			t.Fatalf("%s exited without a DevTools endpoint", chromiumPath)
		}
		wsURL = u
	case <-time.After(30 * time.Second):
		t.Fatalf("%s announced no DevTools endpoint within 30s", chromiumPath)
	}
	bu, err := url.Parse(wsURL)
	if err != nil {
		t.Fatalf("DevTools endpoint %q: %v", wsURL, err)
	}
	pageWS := pageTarget(t, bu.Host)
	b := &browser{t: t, cmd: cmd, waiting: map[int]chan cdpMessage{}, events: make(chan cdpMessage, 256), done: make(chan struct{})}
	b.dial(pageWS)
	go b.readLoop()
	t.Cleanup(func() { b.conn.Close() })
	b.call("Page.enable", nil)
	return b
}

// pageTarget returns the WebSocket URL of the browser's page.
func pageTarget(t *testing.T, host string) string {
	t.Helper()
	resp, err := http.Get("http://" + host + "/json/list")
	if err != nil {
		t.Fatalf("DevTools target list: %v", err)
	}
	defer resp.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatalf("DevTools target list: %v", err)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			return tg.WS
		}
	}
	t.Fatalf("DevTools lists no page: %+v", targets)
	return ""
}

func (b *browser) dial(wsURL string) {
	u, err := url.Parse(wsURL)
	if err != nil {
		b.t.Fatalf("page endpoint %q: %v", wsURL, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		b.t.Fatalf("connect to %s: %v", u.Host, err)
	}
	keyRaw := make([]byte, 16)
	rand.Read(keyRaw)
	key := base64.StdEncoding.EncodeToString(keyRaw)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host, key)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, &http.Request{Method: http.MethodGet})
	if err != nil {
		b.t.Fatalf("WebSocket handshake with %s: %v", u.Host, err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		b.t.Fatalf("WebSocket handshake with %s: %s", u.Host, resp.Status)
	}
	b.conn, b.r = conn, r
}

func (b *browser) writeFrame(opcode byte, payload []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	hdr := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := make([]byte, 4)
	rand.Read(mask)
	hdr = append(hdr, mask...)
	masked := make([]byte, len(payload))
	for i, c := range payload {
		masked[i] = c ^ mask[i%4]
	}
	_, err := b.conn.Write(append(hdr, masked...))
	return err
}

// readMessage returns the next complete text message, answering pings.
func (b *browser) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(b.r, h[:]); err != nil {
			return nil, err
		}
		fin, opcode := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(b.r, ext[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(b.r, ext[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("websocket frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(b.r, payload); err != nil {
			return nil, err
		}
		switch opcode {
		case 0x8:
			return nil, io.EOF
		case 0x9:
			if err := b.writeFrame(0xA, payload); err != nil {
				return nil, err
			}
			continue
		case 0xA:
			continue
		}
		msg = append(msg, payload...)
		if fin {
			return msg, nil
		}
	}
}

func (b *browser) readLoop() {
	defer close(b.done)
	for {
		raw, err := b.readMessage()
		if err != nil {
			b.mu.Lock()
			b.readErr = err
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			continue
		}
		if m.ID == 0 {
			select {
			case b.events <- m:
			default: // nobody waits for this many events
			}
			continue
		}
		b.mu.Lock()
		ch := b.waiting[m.ID]
		delete(b.waiting, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends one command and returns its result.
func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err := b.writeFrame(0x1, msg); err != nil {
		b.t.Fatalf("CDP %s: %v", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			b.t.Fatalf("CDP %s: %s", method, m.Error.Message)
		}
		return m.Result
	case <-b.done:
		b.t.Fatalf("CDP %s: connection lost: %v", method, b.readErr)
	case <-time.After(30 * time.Second):
		b.t.Fatalf("CDP %s: no answer within 30s", method)
	}
	return nil
}

// eval evaluates a JavaScript expression in the page (DevTools is not
// bound by the page's CSP) and decodes its JSON-able value into v.
func (b *browser) eval(expr string, v any) {
	b.t.Helper()
	res := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var out struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	if out.Exception != nil {
		b.t.Fatalf("evaluate %s: %s", expr, out.Exception.Text)
	}
	if v != nil {
		if err := json.Unmarshal(out.Result.Value, v); err != nil {
			b.t.Fatalf("evaluate %s: value %s: %v", expr, out.Result.Value, err)
		}
	}
}

// drainEvents forgets events that arrived so far.
func (b *browser) drainEvents() {
	for {
		select {
		case <-b.events:
		default:
			return
		}
	}
}

// waitLoad waits for the page's load event.
func (b *browser) waitLoad() {
	b.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-b.events:
			if m.Method == "Page.loadEventFired" {
				return
			}
		case <-b.done:
			b.t.Fatalf("CDP connection lost waiting for a page load: %v", b.readErr)
		case <-timeout:
			b.t.Fatal("no page load within 30s")
		}
	}
}

// navigate loads u and waits for it.
func (b *browser) navigate(u string) {
	b.t.Helper()
	b.drainEvents()
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := json.Unmarshal(b.call("Page.navigate", map[string]any{"url": u}), &res); err != nil || res.ErrorText != "" {
		b.t.Fatalf("navigate to %s: %v %s", u, err, res.ErrorText)
	}
	b.waitLoad()
}

// act runs a script that navigates (a click, a form submission) and waits
// for the next page.
func (b *browser) act(script string) {
	b.t.Helper()
	b.drainEvents()
	b.eval(script, nil)
	b.waitLoad()
}
