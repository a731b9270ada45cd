package djangodb

import (
	"fmt"
	"net/url"
	"strings"
)

// High availability: a PostgreSQL primary with streaming standbys is named
// by several hosts, and target_session_attrs=read-write makes every
// connection skip the ones that are not the primary (a standby, a demoted
// primary). lib/pq 1.12 tries the hosts in order and checks the attribute,
// for the pool and for the LISTEN connection alike, since both are opened
// from the one connection string. What it cannot read is libpq's URL form
// with a port per host, postgres://db1:5432,db2:5433/name (net/url keeps
// the whole list as the host, and lib/pq splits it at the last colon only):
// NormalizePostgresDSN rewrites that form into the host= and port= list
// parameters that lib/pq reads, so that --db takes what psql takes.

// NormalizePostgresDSN returns dsn with a multi-host URL authority
// (postgres://[user[:password]@]host1[:port1],host2[:port2],.../name) moved
// into host=host1,host2 and port=port1,port2 query parameters, which lib/pq
// reads; a host without a port gets 5432 when another host has one. Every
// other DSN (one host, a key=value string, host= given as a parameter
// already) is returned unchanged. A host or port list given both ways is
// an error, as is an empty host in the list or a port that is not a number.
func NormalizePostgresDSN(dsn string) (string, error) {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok || (scheme != "postgres" && scheme != "postgresql") {
		return dsn, nil
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hostlist = authority[:at+1], authority[at+1:]
	}
	if !strings.Contains(hostlist, ",") {
		return dsn, nil
	}
	var hosts, ports []string
	anyPort := false
	for _, hp := range strings.Split(hostlist, ",") {
		host, port, err := splitHostPort(hp)
		if err != nil {
			return "", fmt.Errorf("djangodb: multi-host DSN: %w", err)
		}
		hosts = append(hosts, host)
		ports = append(ports, port)
		anyPort = anyPort || port != ""
	}
	path, query := tail, ""
	if q := strings.IndexByte(tail, '?'); q >= 0 {
		path, query = tail[:q], tail[q+1:]
	}
	if frag := strings.IndexByte(query, '#'); frag >= 0 {
		query = query[:frag]
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("djangodb: multi-host DSN: query: %w", err)
	}
	for k := range values {
		if lk := strings.ToLower(k); lk == "host" || lk == "hostaddr" || (lk == "port" && anyPort) {
			return "", fmt.Errorf("djangodb: multi-host DSN names its hosts both before the path and as %s=", k)
		}
	}
	values.Set("host", strings.Join(hosts, ","))
	if anyPort {
		for i, p := range ports {
			if p == "" {
				ports[i] = "5432"
			}
		}
		values.Set("port", strings.Join(ports, ","))
	}
	return scheme + "://" + userinfo + path + "?" + values.Encode(), nil
}

// splitHostPort splits one entry of a multi-host list: host, host:port,
// [v6] or [v6]:port. The host comes back percent-decoded and unbracketed.
func splitHostPort(hp string) (host, port string, err error) {
	switch {
	case hp == "":
		return "", "", fmt.Errorf("empty host in the host list")
	case strings.HasPrefix(hp, "["):
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", fmt.Errorf("host %q: no closing ]", hp)
		}
		host, rest := hp[1:end], hp[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", "", fmt.Errorf("host %q: junk after ]", hp)
			}
			port = rest[1:]
		}
		if err := checkPort(port); err != nil {
			return "", "", err
		}
		return host, port, nil
	}
	host, port, found := strings.Cut(hp, ":")
	if found {
		if strings.Contains(port, ":") {
			return "", "", fmt.Errorf("host %q: an IPv6 address must be in brackets", hp)
		}
		if err := checkPort(port); err != nil {
			return "", "", err
		}
	}
	if host, err = url.PathUnescape(host); err != nil {
		return "", "", fmt.Errorf("host %q: %w", hp, err)
	}
	if host == "" {
		return "", "", fmt.Errorf("empty host in the host list")
	}
	return host, port, nil
}

func checkPort(port string) error {
	if port == "" {
		return nil
	}
	if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("port %q is not a number", port)
	}
	return nil
}
