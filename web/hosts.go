package web

import (
	"net"
	"net/http"
	"strings"
)

// Host checking. A daemon bound to localhost is still readable from a web
// page on another origin by DNS rebinding: the attacker's name first
// resolves to the attacker, then to 127.0.0.1, and the browser sends the
// page's requests, with the attacker's name as Host, to atpd. Answering
// only requests whose Host is a name atpd was told about defeats that. An
// IP address as Host cannot be rebound (no DNS is involved), so addresses
// are always accepted; so are "localhost" and names under ".localhost",
// which resolve to the loopback interface by definition (RFC 6761).

// hostAllowed reports whether a request's Host header names this server:
// an IP address, a localhost name, or a name of allowed (exact, or a
// suffix when the entry starts with ".", or "*" for any).
func hostAllowed(hostHeader string, allowed []string) bool {
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSuffix(a, "."))
		switch {
		case a == "*":
			return true
		case strings.HasPrefix(a, "."):
			if strings.HasSuffix(host, a) || host == a[1:] {
				return true
			}
		case host == a:
			return true
		}
	}
	return false
}

// checkHost answers 421 Misdirected Request to a request whose Host is no
// name of this server, before any handler reads the database.
func (s *server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, s.opts.AllowedHosts) {
			s.log.Warn("web: refused a request for a host name not allowed (DNS rebinding?); allow it with --http-allowed-hosts",
				"host", r.Host, "request", r.URL.Path, "remote", r.RemoteAddr)
			msg := "host " + r.Host + " is not served here (allowed: IP addresses, localhost and --http-allowed-hosts)"
			if strings.HasPrefix(r.URL.Path, s.base+"/api/") {
				s.writeJSON(w, http.StatusMisdirectedRequest, ErrorJSON{Error: msg, Status: http.StatusMisdirectedRequest})
				return
			}
			securityHeaders(w.Header())
			http.Error(w, msg, http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}
