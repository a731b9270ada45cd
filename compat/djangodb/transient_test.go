package djangodb_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/eoxserver/atpd/compat/djangodb"
)

func TestConnectionLost(t *testing.T) {
	netErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	pqErr := func(code string) error { return &pq.Error{Severity: "FATAL", Code: pqerror.Code(code)} }
	tests := []struct {
		name string
		err  error
		lost bool
	}{
		{"bad connection", driver.ErrBadConn, true},
		{"wrapped bad connection", fmt.Errorf("djangodb: claim for server 0x1: %w", driver.ErrBadConn), true},
		{"reset", netErr("read", syscall.ECONNRESET), true},
		{"broken pipe", netErr("write", syscall.EPIPE), true},
		{"EOF", io.EOF, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"closed", net.ErrClosed, true},
		{"terminated (57P01)", pqErr("57P01"), true},
		{"crash of another backend (57P02)", pqErr("57P02"), true},
		{"idle session timeout (57P05)", pqErr("57P05"), true},
		{"idle in transaction timeout (25P03)", pqErr("25P03"), true},
		{"connection failure (08006)", pqErr("08006"), true},

		{"nil", nil, false},
		{"refused: the server is down", netErr("dial", syscall.ECONNREFUSED), false},
		{"starting up or shutting down (57P03)", pqErr("57P03"), false},
		{"too many connections (53300)", pqErr("53300"), false},
		{"cannot establish (08001)", pqErr("08001"), false},
		{"deadlock (40P01)", pqErr("40P01"), false},
		{"constraint (23505)", pqErr("23505"), false},
		{"cancelled", fmt.Errorf("claim: %w", context.Canceled), false},
		{"timed out", context.DeadlineExceeded, false},
		{"no rows", sql.ErrNoRows, false},
		{"not found", djangodb.ErrNotFound, false},
		{"the words without the error", errors.New("driver: bad connection"), false},
	}
	for _, tc := range tests {
		if got := djangodb.ConnectionLost(tc.err); got != tc.lost {
			t.Errorf("ConnectionLost(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.lost)
		}
		if tc.lost && !djangodb.Transient(tc.err) {
			t.Errorf("Transient(%s: %v) = false for a lost connection", tc.name, tc.err)
		}
	}
}
