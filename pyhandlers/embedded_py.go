package pyhandlers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"unicode/utf8"

	"github.com/go-python/gpython/py"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// taskStatusType is the gpython class of the handler's taskStatus.
var taskStatusType = py.NewType("TaskStatus", "The handler's view of its task, as tracker.TaskStatus offers it.")

// taskStatusError is raised in a gpython handler when a TaskStatus call
// failed, like TaskStatusError in the CPython worker.
var taskStatusError = py.ExceptionType.NewType("TaskStatusError", "atpd could not carry out a TaskStatus call.", nil, nil)

// integrityError is raised for a TaskStatus write the database refuses, as
// Django's IntegrityError was (see notNull).
var integrityError = py.ExceptionType.NewType("IntegrityError", "A write the database refuses.", nil, nil)

// dummyLockType is the class of TaskStatus.dbLock (tracker.DummyLock).
var dummyLockType = py.NewType("DummyLock", "tracker.DummyLock: acquire and release do nothing; atpd serialises the writes itself.")

type pyDummyLock struct{}

func (*pyDummyLock) Type() *py.Type { return dummyLockType }

func dummyLock() py.Object { return &pyDummyLock{} }

func init() {
	noop := func(py.Object) (py.Object, error) { return py.None, nil }
	dummyLockType.Dict["acquire"] = py.MustNewMethod("acquire", noop, 0, "Does nothing.")
	dummyLockType.Dict["release"] = py.MustNewMethod("release", noop, 0, "Does nothing.")
}

// fieldText is what Django stores in a TextField for v, not None (see
// writeNone): str(v).
func fieldText(v py.Object) (string, error) {
	return py.StrAsString(v)
}

// writeNone makes the original's write of w with a None (writeNone) and
// raises the IntegrityError it raised, if any.
func (s *pyTaskStatus) writeNone(w djangodb.Write) error {
	refusal, err := writeNone(s.ctx, s.status, s.database, w)
	if err != nil {
		return raiseStatusError(err)
	}
	if refusal == "" {
		return nil
	}
	return py.ExceptionNewf(integrityError, "%s", refusal)
}

func init() {
	d := taskStatusType.Dict
	d["getInfo"] = py.MustNewMethod("getInfo", tsGetInfo, 0, "Returns (type identifier, instance identifier, status, status text).")
	d["getIdentifier"] = py.MustNewMethod("getIdentifier", tsGetIdentifier, 0, "Returns (type identifier, instance identifier).")
	d["getStatus"] = py.MustNewMethod("getStatus", tsGetStatus, 0, "Returns (status code, status text).")
	d["setSuccess"] = py.MustNewMethod("setSuccess", tsSetter("setSuccess", djangodb.Finished, executor.TaskStatus.SetSuccess), 0, "Sets FINISHED.")
	d["setFailure"] = py.MustNewMethod("setFailure", tsSetter("setFailure", djangodb.Failed, executor.TaskStatus.SetFailure), 0, "Sets FAILED.")
	d["setPaused"] = py.MustNewMethod("setPaused", tsSetter("setPaused", djangodb.Paused, executor.TaskStatus.SetPaused), 0, "Sets PAUSED.")
	d["setRunning"] = py.MustNewMethod("setRunning", tsSetter("setRunning", djangodb.Running, executor.TaskStatus.SetRunning), 0, "Sets RUNNING.")
	d["storeResponse"] = py.MustNewMethod("storeResponse", tsStoreResponse, 0, "Stores the response: text UTF-8 encoded, bytes as they are.")
	for s := djangodb.Undefined; s <= djangodb.Failed; s++ {
		d[s.String()] = py.Int(s)
	}
}

// readyTypes completes gpython types made after gpython's own init, which
// readied only the types that existed then. A subclass inherits its base's
// flags, READY included, so that flag is cleared first; an exception class
// left unready has no MRO and "except Exception" does not catch it.
func readyTypes() {
	for _, t := range []*py.Type{taskStatusError, integrityError, taskStatusType, dummyLockType, pyOutputType} {
		if t.Flags&py.TPFLAGS_READY != 0 && len(t.Mro) == 0 {
			t.Flags &^= py.TPFLAGS_READY
		}
	}
	if err := py.TypeMakeReady(); err != nil {
		panic(fmt.Sprintf("pyhandlers: gpython types: %v", err))
	}
}

// pyTaskStatus is one task's taskStatus object.
type pyTaskStatus struct {
	ctx    context.Context
	status executor.TaskStatus
	task   *executor.Task
	dict   py.StringDict // instance attributes: task_id, dbLock
	// database words a refused write when status cannot (see writeNone).
	database string
	// mimeType is the first MIME type this run stored: setTaskResponse
	// keeps a stored response's first one (it assigns resp.mineType).
	mimeType *string
}

func (*pyTaskStatus) Type() *py.Type { return taskStatusType }

// GetDict makes task_id (tracker.TaskStatus's attribute) readable.
func (s *pyTaskStatus) GetDict() py.StringDict { return s.dict }

func statusTuple(st djangodb.Status) py.Tuple {
	return py.Tuple{py.Int(st), py.String(st.String())}
}

func raiseStatusError(err error) error {
	return py.ExceptionNewf(taskStatusError, "%s", err.Error())
}

func tsGetInfo(self py.Object, args py.Tuple) (py.Object, error) {
	s := self.(*pyTaskStatus)
	if err := py.UnpackTuple(args, nil, "getInfo", 0, 0); err != nil {
		return nil, err
	}
	info, err := s.status.Info(s.ctx)
	if err != nil {
		return nil, raiseStatusError(err)
	}
	return py.Tuple{py.String(info.Type), py.String(info.Identifier), py.Int(info.Status), py.String(info.Status.String())}, nil
}

func tsGetIdentifier(self py.Object, args py.Tuple) (py.Object, error) {
	s := self.(*pyTaskStatus)
	if err := py.UnpackTuple(args, nil, "getIdentifier", 0, 0); err != nil {
		return nil, err
	}
	typ, id := s.status.Identifier()
	return py.Tuple{py.String(typ), py.String(id)}, nil
}

func tsGetStatus(self py.Object, args py.Tuple) (py.Object, error) {
	s := self.(*pyTaskStatus)
	if err := py.UnpackTuple(args, nil, "getStatus", 0, 0); err != nil {
		return nil, err
	}
	st, err := s.status.Status(s.ctx)
	if err != nil {
		return nil, raiseStatusError(err)
	}
	return statusTuple(st), nil
}

func tsSetter(name string, status djangodb.Status, set func(executor.TaskStatus, context.Context, string) error) func(py.Object, py.Tuple, py.StringDict) (py.Object, error) {
	return func(self py.Object, args py.Tuple, kwargs py.StringDict) (py.Object, error) {
		s := self.(*pyTaskStatus)
		var msg py.Object = py.String("")
		if err := py.ParseTupleAndKeywords(args, kwargs, "|O:"+name, []string{"message"}, &msg); err != nil {
			return nil, err
		}
		if msg == py.None {
			if err := s.writeNone(djangodb.StatusWrite(status, "")); err != nil {
				return nil, err
			}
			return py.None, nil
		}
		text, err := fieldText(msg)
		if err != nil {
			return nil, err
		}
		if err := set(s.status, s.ctx, text); err != nil {
			return nil, raiseStatusError(err)
		}
		return py.None, nil
	}
}

func tsStoreResponse(self py.Object, args py.Tuple, kwargs py.StringDict) (py.Object, error) {
	s := self.(*pyTaskStatus)
	var resp py.Object
	var mime py.Object = py.String("text/xml")
	if err := py.ParseTupleAndKeywords(args, kwargs, "O|O:storeResponse", []string{"response", "mimeType"}, &resp, &mime); err != nil {
		return nil, err
	}
	var data []byte
	switch r := resp.(type) {
	case py.String:
		data = []byte(r)
	case py.Bytes:
		data = []byte(r)
	default:
		// What zlib.compress(response) raised in setTaskResponse.
		return nil, py.ExceptionNewf(py.TypeError, "a bytes-like object is required, not '%s'", resp.Type().Name)
	}
	var mimeText string
	if s.mimeType != nil {
		mimeText = *s.mimeType
	} else {
		var err error
		if mime == py.None {
			if err := s.writeNone(djangodb.ResponseWrite(data, "")); err != nil {
				return nil, err
			}
			return py.None, nil
		}
		if mimeText, err = fieldText(mime); err != nil {
			return nil, err
		}
	}
	if err := s.status.StoreResponse(s.ctx, data, mimeText); err != nil {
		return nil, raiseStatusError(err)
	}
	s.mimeType = &mimeText
	return py.None, nil
}

// pyOutputType is the class of the sys.stdout and sys.stderr a gpython
// handler sees: they log lines with the task instead of writing to the
// daemon's own streams.
var pyOutputType = py.NewType("TaskOutput", "Handler output, logged line by line.")

func init() {
	pyOutputType.Dict["write"] = py.MustNewMethod("write", func(self py.Object, arg py.Object) (py.Object, error) {
		s, ok := arg.(py.String)
		if !ok {
			return nil, py.ExceptionNewf(py.TypeError, "write() argument must be str, not %s", arg.Type().Name)
		}
		self.(*pyOutput).write(string(s))
		return py.Int(utf8.RuneCountInString(string(s))), nil
	}, 0, "write(text) -> number of characters written")
	pyOutputType.Dict["flush"] = py.MustNewMethod("flush", func(self py.Object) (py.Object, error) {
		return py.None, nil
	}, 0, "flush() -> None; lines are logged as they end")
	readyTypes()
}

// pyOutput collects one stream of a task's output into lines; it is only
// used by the goroutine running the task.
type pyOutput struct {
	log       *slog.Logger
	stream    string
	level     slog.Level
	maxLine   int
	count     *taskOutput // shared by both streams: the per-task line limit
	buf       bytes.Buffer
	truncated bool
}

func (*pyOutput) Type() *py.Type { return pyOutputType }

func (o *pyOutput) write(s string) {
	for s != "" {
		line, rest, complete := strings.Cut(s, "\n")
		s = rest
		if room := o.maxLine - o.buf.Len(); len(line) > room {
			line, o.truncated = line[:max(room, 0)], true
		}
		o.buf.WriteString(line)
		if complete {
			o.emit()
		}
	}
}

func (o *pyOutput) flush() {
	if o.buf.Len() > 0 {
		o.emit()
	}
}

func (o *pyOutput) emit() {
	line, truncated := o.buf.String(), o.truncated
	o.buf.Reset()
	o.truncated = false
	if line == "" {
		return
	}
	if n := o.count.lines.Add(1); o.count.max >= 0 && n > o.count.max {
		o.count.dropped.Add(1)
		return
	}
	attrs := []slog.Attr{slog.String("stream", o.stream), slog.String("line", strings.ToValidUTF8(line, "\uFFFD"))}
	if truncated {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	o.log.LogAttrs(context.Background(), o.level, "python handler output", attrs...)
}

// maxInputDepth bounds the recursion of toPy; compat/pickle bounds the
// nesting it decodes, this guards the conversion on its own.
const maxInputDepth = 1000

// toPy converts a decoded input (compat/pickle's Go values) into the gpython
// value CPython would have unpickled, or says which value gpython has no
// equivalent for.
func toPy(v any, depth int) (py.Object, error) {
	if depth > maxInputDepth {
		return nil, fmt.Errorf("input nested deeper than %d", maxInputDepth)
	}
	switch v := v.(type) {
	case nil:
		return py.None, nil
	case bool:
		return py.NewBool(v), nil
	case int64:
		return py.Int(v), nil
	case int:
		return py.Int(v), nil
	case *big.Int:
		return (*py.BigInt)(new(big.Int).Set(v)), nil
	case float64:
		return py.Float(v), nil
	case complex128:
		return py.Complex(v), nil
	case string:
		return py.String(latin1IfNotUTF8(v)), nil
	case pickle.Bytes:
		return py.Bytes(append([]byte(nil), v...)), nil
	case pickle.Tuple:
		items, err := toPySlice(v, depth)
		return py.Tuple(items), err
	case []any:
		items, err := toPySlice(v, depth)
		if err != nil {
			return nil, err
		}
		return py.NewListFromItems(items), nil
	case pickle.Set:
		items, err := toPySetItems(v, depth)
		if err != nil {
			return nil, err
		}
		return py.NewSetFromItems(items), nil
	case pickle.FrozenSet:
		items, err := toPySetItems(v, depth)
		if err != nil {
			return nil, err
		}
		return py.NewFrozenSetFromItems(items), nil
	case *pickle.Dict:
		d := py.NewStringDictSized(v.Len())
		for _, e := range v.Entries() {
			k, ok := e.Key.(string)
			if !ok {
				return nil, fmt.Errorf("input has a dict key of type %T; gpython dicts only have str keys", e.Key)
			}
			val, err := toPy(e.Value, depth+1)
			if err != nil {
				return nil, err
			}
			d[latin1IfNotUTF8(k)] = val
		}
		return d, nil
	case pickle.Decimal:
		return nil, fmt.Errorf("input holds decimal.Decimal(%q); gpython has no decimal module", string(v))
	case pickle.DateTime, pickle.Date, pickle.Time, pickle.Timedelta:
		return nil, fmt.Errorf("input holds a %T; gpython has no datetime module", v)
	case pickle.Global:
		return nil, fmt.Errorf("input holds the class %s; gpython cannot import it", v)
	case *pickle.Object:
		return nil, fmt.Errorf("input holds a %s.%s object; gpython cannot create it", v.Module, v.Name)
	default:
		return nil, fmt.Errorf("input holds a %T, which has no gpython equivalent", v)
	}
}

func toPySlice(vs []any, depth int) ([]py.Object, error) {
	out := make([]py.Object, len(vs))
	for i, v := range vs {
		o, err := toPy(v, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

// toPySetItems admits only elements gpython can hash: its sets are Go maps
// keyed by the object, and a tuple or big integer as a key would panic.
func toPySetItems(vs []any, depth int) ([]py.Object, error) {
	out := make([]py.Object, len(vs))
	for i, v := range vs {
		switch v.(type) {
		case nil, bool, int64, int, float64, complex128, string:
		default:
			return nil, fmt.Errorf("input has a set element of type %T; gpython sets only hold None, bool, int, float, complex and str", v)
		}
		o, err := toPy(v, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

// latin1IfNotUTF8 reads a Python 2 byte string that is not UTF-8 as
// latin-1, as the CPython worker's pickle.loads(encoding="latin1") does. A
// Python 2 byte string that happens to be valid UTF-8 cannot be told from
// text here and stays as it is; for non-ASCII bytes that differs from the
// CPython worker.
func latin1IfNotUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}
