package handlertest_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/gohandlers/handlertest"
)

func status(s djangodb.Status, m string) handlertest.Record {
	return handlertest.Record{Status: s, Message: m}
}

func response(data, mime string) handlertest.Record {
	return handlertest.Record{Response: true, Data: []byte(data), MimeType: mime}
}

// TestDemo: the built-in demo port, run through the kit on Go values, leaves
// the records the daemon writes for EOxServer's demo handler: the sum as a
// text/plain response then FINISHED; FAILED with the handler's message on
// a non-number (the daemon then leaves FAILED alone); FAILED with
// Python's exception text when the input is not iterable.
func TestDemo(t *testing.T) {
	tests := []struct {
		name   string
		input  any
		want   []handlertest.Record
		status djangodb.Status
		resp   string
	}{
		{"sequence", pickle.Tuple{1, 2, 3, 4, 5},
			[]handlertest.Record{response("15.0", "text/plain"), status(djangodb.Finished, "")}, djangodb.Finished, "15.0"},
		{"empty", []any{},
			[]handlertest.Record{response("0", "text/plain"), status(djangodb.Finished, "")}, djangodb.Finished, "0"},
		{"strings of numbers", []any{"1.5", " 2 "},
			[]handlertest.Record{response("3.5", "text/plain"), status(djangodb.Finished, "")}, djangodb.Finished, "3.5"},
		{"not a number", []any{int64(1), "x"},
			[]handlertest.Record{status(djangodb.Failed, gohandlers.DemoFailure)}, djangodb.Failed, ""},
		{"not iterable", nil,
			[]handlertest.Record{status(djangodb.Failed, "'NoneType' object is not iterable")}, djangodb.Failed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := handlertest.Run(t.Context(), gohandlers.Demo, tc.input, handlertest.Options{Path: gohandlers.DemoPath})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Records, tc.want) {
				t.Errorf("records %v, want %v", res.Records, tc.want)
			}
			if res.Status != tc.status {
				t.Errorf("status %s, want %s", res.Status, tc.status)
			}
			if got := res.Response; (tc.resp == "") != (got == nil) || (got != nil && string(got.Data) != tc.resp) {
				t.Errorf("response %+v, want %q", got, tc.resp)
			}
		})
	}
}

// TestStoredInput: an input as a Python producer stored it reaches the
// handler through the daemon's decoder; one that does not decode fails the
// task with the decoder's words, as in the daemon.
func TestStoredInput(t *testing.T) {
	// The stored form of (1, 2.5), as a producer writes it.
	stored, err := pickle.Encode(pickle.Tuple{int64(1), 2.5})
	if err != nil {
		t.Fatal(err)
	}
	res := handlertest.RunStored(t.Context(), gohandlers.Demo, stored, handlertest.Options{})
	if want := []handlertest.Record{response("3.5", "text/plain"), status(djangodb.Finished, "")}; !reflect.DeepEqual(res.Records, want) {
		t.Errorf("records %v, want %v", res.Records, want)
	}
	bad := handlertest.RunStored(t.Context(), gohandlers.Demo, "not base64!", handlertest.Options{})
	if bad.Status != djangodb.Failed || !errors.Is(bad.Err, executor.ErrInput) || len(bad.Records) != 1 {
		t.Errorf("undecodable input: %+v", bad)
	}
}

// TestHandlerEndsTaskItself: a handler that sets FINISHED itself and stores
// a response after it gets no outcome record from the daemon; one that
// panics fails with the panic's text; writes after the run are refused.
func TestHandlerEndsTaskItself(t *testing.T) {
	var late executor.TaskStatus
	h := func(ctx context.Context, ts executor.TaskStatus, input any) error {
		late = ts
		if err := ts.SetRunning(ctx, "50%"); err != nil {
			return err
		}
		if err := ts.SetSuccess(ctx, "done early"); err != nil {
			return err
		}
		if st, err := ts.Status(ctx); err != nil || st != djangodb.Finished {
			t.Errorf("status read inside the handler = %s, %v", st, err)
		}
		return ts.StoreResponse(ctx, []byte("<r/>"), "text/xml")
	}
	res, err := handlertest.Run(t.Context(), h, "in", handlertest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []handlertest.Record{status(djangodb.Running, "50%"), status(djangodb.Finished, "done early"), response("<r/>", "text/xml")}
	if !reflect.DeepEqual(res.Records, want) || res.Status != djangodb.Finished {
		t.Errorf("records %v (status %s), want %v", res.Records, res.Status, want)
	}
	if err := late.SetFailure(t.Context(), "too late"); !errors.Is(err, handlertest.ErrDone) {
		t.Errorf("write after the run = %v, want ErrDone", err)
	}
	boom := func(context.Context, executor.TaskStatus, any) error { panic("boom") }
	res, err = handlertest.Run(t.Context(), boom, nil, handlertest.Options{Path: "my.app.boom"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != djangodb.Failed || len(res.Records) != 1 || !strings.Contains(res.Records[0].Message, "handler my.app.boom panicked: boom") {
		t.Errorf("panicking handler: %+v", res)
	}
}
