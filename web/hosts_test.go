package web_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/web"
)

// TestAllowedHosts: the server answers requests addressed to an IP
// address, a localhost name or an allowed name, and refuses every other
// Host (a DNS-rebinding page's) with 421 before reading anything.
func TestAllowedHosts(t *testing.T) {
	store := openStore(t, dbCases[len(dbCases)-1])
	h, _ := newHandler(t, store, web.Options{AllowedHosts: []string{"atpd.example.org", ".internal.example"}})
	base := serve(t, h)
	for _, tc := range []struct {
		host string
		code int
	}{
		{"", http.StatusOK}, // the test server's own 127.0.0.1:port
		{"localhost", http.StatusOK},
		{"LOCALHOST:8080", http.StatusOK},
		{"x.localhost", http.StatusOK},
		{"[::1]:9090", http.StatusOK},
		{"10.1.2.3", http.StatusOK},
		{"atpd.example.org", http.StatusOK},
		{"atpd.example.org.:80", http.StatusOK},
		{"a.internal.example", http.StatusOK},
		{"internal.example", http.StatusOK},
		{"rebind.attacker.example", http.StatusMisdirectedRequest},
		{"rebind.attacker.example:9090", http.StatusMisdirectedRequest},
		{"example.org", http.StatusMisdirectedRequest},
		{"atpd.example.org.attacker.example", http.StatusMisdirectedRequest},
		{"localhost.attacker.example", http.StatusMisdirectedRequest},
	} {
		for _, path := range []string{"/api/tasks", "/tasks", "/metrics", "/healthz"} {
			req, err := http.NewRequest("GET", base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("Host %q %s: %d, want %d", tc.host, path, resp.StatusCode, tc.code)
			}
			if tc.code != http.StatusOK && !strings.Contains(string(body), "--http-allowed-hosts") {
				t.Errorf("Host %q %s: the refusal does not say how to allow it: %s", tc.host, path, body)
			}
			if wantJSON := strings.HasPrefix(path, "/api/"); tc.code != http.StatusOK && wantJSON != (resp.Header.Get("Content-Type") == "application/json") {
				t.Errorf("Host %q %s: Content-Type %s", tc.host, path, resp.Header.Get("Content-Type"))
			}
		}
	}
}
