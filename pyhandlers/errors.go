package pyhandlers

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrStopped is returned by Execute when Stop interrupted the task or the
// pool was not running; like a cancelled context it says nothing about the
// task itself.
var ErrStopped = errors.New("pyhandlers: pool stopped")

// HandlerError is a Python exception raised by the handler (or while
// importing it or unpickling its input). Error() is exactly str(exception),
// the FAILED message the reference daemon wrote.
type HandlerError struct {
	Message   string // str(exception)
	Class     string // the exception's class name, e.g. "KeyError"
	Traceback string
}

func (e *HandlerError) Error() string { return e.Message }

// ExitError is a worker that died while running a task: os._exit, a signal,
// the out-of-memory killer, or SystemExit raised by the handler.
type ExitError struct {
	Status int            // exit status, when Signal is 0
	Signal syscall.Signal // the signal that killed it, or 0
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("python worker killed by signal %d (%v)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("python worker exited with status %d", e.Status)
}
