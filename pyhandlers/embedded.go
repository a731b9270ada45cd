package pyhandlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-python/gpython/py"
	_ "github.com/go-python/gpython/stdlib" // registers gpython's context, builtins and modules

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// Embedded runs pure-Python handler modules inside the daemon with gpython
// (a Python 3.4 subset): no CPython needed, no process per worker, but only
// handlers that stick to what gpython implements. What it cannot run (an
// import it lacks, syntax it does not know, an input type it has no value
// for) fails the task with an error wrapping executor.ErrUnsupported.
//
// Each task runs in a fresh gpython context: module state does not carry
// over between tasks as it does in a CPython worker, and an edited handler
// module is compiled again on its next task. Modules come only from
// gpython's built-in ones and .py files along PythonPath.
//
// gpython differs from CPython in ways that cannot all be detected, so route
// a handler here only after checking it (the CPython pool is the default):
//   - "%" formatting is Go's fmt ("%s" % [1] gives "&{[1]}", not "[1]");
//     str.format and str.join do not exist (detected: the task fails as
//     unsupported);
//   - dicts take str keys only, in no fixed order; sets hold scalars only;
//     inputs with datetime, Decimal or other objects are unsupported;
//   - a Python 2 byte string arrives as text read as UTF-8 when it is valid
//     UTF-8 (the CPython worker reads it as latin-1);
//   - os._exit, os.chdir, os.putenv and os.unsetenv would act on the daemon
//     and are refused;
//   - it is Python 3 syntax: a Python 2 handler runs here only if it is
//     also valid Python 3.4 without the Python 2 names (print statements,
//     unicode(), long, basestring, xrange, dict.iteritems, "except E, e"
//     fail to compile or to run and fail the task as unsupported); a
//     Python 2 handler as it stands belongs in CPython workers under
//     --python python2.7, which the tests run.
//
// gpython cannot interrupt running Python code. When ctx ends first,
// Execute returns at once and abandons the handler's goroutine, which keeps
// running until the handler returns by itself (its TaskStatus calls fail
// from then on, so it cannot change the task any more). Abandoned handlers
// keep their slot: at most Workers handlers run at once, abandoned ones
// included, so a handler stuck in a loop costs one slot and one core, not
// the daemon.
type Embedded struct {
	cfg   Config
	log   *slog.Logger
	slots chan struct{}
	codes codeCache

	abandoned atomic.Int64
}

var _ executor.Executor = (*Embedded)(nil)

// NewEmbedded returns a gpython executor. Of cfg it uses PythonPath (where
// handler modules are found), Workers, MaxMessageSize, MaxLineLength,
// MaxOutputLines and Logger.
func NewEmbedded(cfg Config) (*Embedded, error) {
	cfg = cfg.withDefaults()
	var errs []error
	for _, p := range cfg.PythonPath {
		if p == "" {
			errs = append(errs, errors.New("python path: empty directory"))
		}
	}
	if cfg.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers: %d, want at least 1", cfg.Workers))
	}
	if cfg.MaxMessageSize < 1024 {
		errs = append(errs, fmt.Errorf("max message size: %d, want at least 1 KiB", cfg.MaxMessageSize))
	}
	if cfg.MaxLineLength < 16 {
		errs = append(errs, fmt.Errorf("max line length: %d, want at least 16", cfg.MaxLineLength))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pyhandlers: invalid embedded config: %w", err)
	}
	return &Embedded{
		cfg:   cfg,
		log:   cfg.Logger.With("executor", "gpython"),
		slots: make(chan struct{}, cfg.Workers),
	}, nil
}

// Abandoned reports how many handlers were left running after their
// context ended and have not returned yet.
func (e *Embedded) Abandoned() int64 { return e.abandoned.Load() }

// Execute runs the task's handler in a new gpython context.
// SyncWrites: as for Pool, Python handlers see each write committed.
func (e *Embedded) SyncWrites(string) bool { return true }

func (e *Embedded) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) error {
	if !task.HasInput {
		return executor.ErrNoInputRow
	}
	input, err := pickle.DecodeOptions{MaxSize: e.cfg.MaxMessageSize}.Decode(task.Input)
	if err != nil {
		return executor.NewInputError(err)
	}
	pyInput, err := toPy(input, 0)
	if err != nil {
		return e.unsupported(task, err.Error())
	}
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	log := e.log.With("task_type", task.Type, "task_identifier", task.Identifier, "instance_id", task.InstanceID, "handler", task.Handler)
	done := make(chan error, 1)
	var abandoned atomic.Bool
	go func() {
		defer func() { <-e.slots }()
		err := e.run(ctx, task, pyInput, status, log)
		if abandoned.Load() {
			e.abandoned.Add(-1)
			log.Info("abandoned gpython handler returned", "error", err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		abandoned.Store(true)
		e.abandoned.Add(1)
		log.Warn("gpython handler interrupted; it keeps running in the background until it returns (gpython cannot stop it)",
			"cause", context.Cause(ctx).Error(), "abandoned_handlers", e.abandoned.Load())
		return fmt.Errorf("python handler %s interrupted: %w", task.Handler, ctx.Err())
	}
}

func (e *Embedded) unsupported(task *executor.Task, reason string) error {
	return fmt.Errorf("gpython cannot run handler %s: %s: %w", task.Handler, reason, executor.ErrUnsupported)
}

// run is one task in its own gpython context. gpython is not hardened
// against every program; a panic in it fails the task, not the daemon.
func (e *Embedded) run(ctx context.Context, task *executor.Task, input py.Object, status executor.TaskStatus, log *slog.Logger) (err error) {
	out := &pyOutput{log: log, stream: "stdout", level: slog.LevelInfo, maxLine: e.cfg.MaxLineLength, count: &taskOutput{max: int64(e.cfg.MaxOutputLines)}}
	errOut := &pyOutput{log: log, stream: "stderr", level: slog.LevelWarn, maxLine: e.cfg.MaxLineLength, count: out.count}
	defer func() {
		if r := recover(); r != nil {
			log.Error("gpython panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = e.unsupported(task, fmt.Sprintf("gpython panicked: %v", r))
		}
		out.flush()
		errOut.flush()
		if n := out.count.dropped.Load(); n > 0 {
			log.Warn("python handler output: lines dropped", "dropped_lines", n, "max_output_lines", out.count.max)
		}
	}()

	pctx := py.NewContext(py.ContextOpts{SysArgs: []string{"atpd"}, SysPaths: e.cfg.PythonPath})
	defer pctx.Close()
	im := &importer{ctx: pctx, path: e.cfg.PythonPath, codes: &e.codes}
	pctx.Store().Builtins.Globals["__import__"] = py.MustNewMethod("__import__", im.builtinImport, 0, "__import__(name, globals=None, locals=None, fromlist=(), level=0) -> module")
	if sys, err := pctx.GetModule("sys"); err == nil {
		sys.Globals["stdout"], sys.Globals["stderr"] = out, errOut
	}

	ts := &pyTaskStatus{ctx: ctx, status: status, task: task, database: e.cfg.Database,
		dict: py.StringDict{"task_id": py.Int(task.InstanceID), "dbLock": dummyLock()}}
	handler, herr := e.importHandler(im, task, log)
	if herr != nil {
		return herr
	}
	if _, ok := handler.(*py.Module); ok {
		// CPython's words; gpython would say "'module' has no attribute '__call__'".
		return &HandlerError{Message: "'module' object is not callable", Class: "TypeError"}
	}
	_, callErr := py.Call(handler, py.Tuple{ts, input}, nil)
	if callErr == nil {
		return nil
	}
	return e.failure(task, im, callErr, log)
}

// importHandler resolves a dotted path as the reference daemon's Importer
// did, getattr(__import__(module, fromlist=[func]), func) after
// path.rpartition("."), with CPython's messages for a path that does not
// resolve: "Empty module name" for a path without a dot, an
// AttributeError for a missing (or empty) function name.
func (e *Embedded) importHandler(im *importer, task *executor.Task, log *slog.Logger) (py.Object, error) {
	path := task.Handler
	modName, funcName := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		modName, funcName = path[:i], path[i+1:]
	}
	if modName == "" {
		return nil, &HandlerError{Message: "Empty module name", Class: "ValueError"}
	}
	mod, err := im.load(modName)
	if err == nil {
		if _, isPkg := im.pkgs[modName]; isPkg && funcName != "" {
			if _, ok := mod.Globals[funcName]; !ok {
				// fromlist imports a submodule of that name.
				if _, serr := im.load(modName + "." + funcName); serr != nil && !py.IsException(py.ImportError, serr) {
					err = serr
				}
			}
		}
	}
	if err != nil {
		return nil, e.failure(task, im, err, log)
	}
	if obj, ok := mod.Globals[funcName]; ok {
		return obj, nil
	}
	return nil, &HandlerError{Message: fmt.Sprintf("module '%s' has no attribute '%s'", modName, funcName), Class: "AttributeError"}
}

// failure turns what the handler raised into the task's error.
func (e *Embedded) failure(task *executor.Task, im *importer, err error, log *slog.Logger) error {
	typ, value, tb := exceptionParts(err)
	if typ == nil {
		// Not a Python exception: an error of gpython itself.
		return e.unsupported(task, err.Error())
	}
	msg := exceptionStr(value)
	trace := formatTraceback(typ, msg, tb)
	switch {
	case im.unsupported != "":
		log.Warn("gpython cannot run handler", "reason", im.unsupported, "traceback", trace)
		return e.unsupported(task, im.unsupported)
	case py.IsException(py.ImportError, typ) && len(im.missing) > 0:
		reason := fmt.Sprintf("module %s is not available to gpython (%s)", strings.Join(im.missing, ", "), msg)
		log.Warn("gpython cannot run handler", "reason", reason, "traceback", trace)
		return e.unsupported(task, reason)
	case py.IsException(py.SystemError, typ):
		return e.unsupported(task, fmt.Sprintf("gpython internal error: %s", msg))
	case py.IsException(py.AttributeError, typ):
		if reason, ok := missingBuiltinAttr(msg); ok {
			log.Warn("gpython cannot run handler", "reason", reason, "traceback", trace)
			return e.unsupported(task, reason)
		}
	}
	log.Warn("python handler raised an exception", "exception", typ.Name, "error", msg, "traceback", trace)
	return &HandlerError{Message: msg, Class: typ.Name, Traceback: trace}
}

// gpythonBuiltins are the built-in types whose missing attributes are gaps
// in gpython rather than mistakes in the handler: CPython has them all.
var gpythonBuiltins = map[string]bool{
	"str": true, "bytes": true, "list": true, "tuple": true, "dict": true, "int": true,
	"float": true, "complex": true, "bool": true, "set": true, "frozenset": true,
	"range": true, "type": true, "NoneType": true, "object": true, "function": true,
	"Exception": true, "BaseException": true,
}

// missingBuiltinAttr recognises gpython's "'str' has no attribute 'join'".
func missingBuiltinAttr(msg string) (string, bool) {
	msg = strings.Trim(msg, `"`)
	typ, rest, ok := strings.Cut(strings.TrimPrefix(msg, "'"), "' has no attribute ")
	if !ok || !gpythonBuiltins[typ] {
		return "", false
	}
	return fmt.Sprintf("gpython's %s has no attribute %s", typ, rest), true
}

func exceptionParts(err error) (*py.Type, py.Object, *py.Traceback) {
	var info py.ExceptionInfo
	switch x := err.(type) {
	case py.ExceptionInfo:
		info = x
	case *py.ExceptionInfo:
		info = *x
	case *py.Exception:
		return x.Type(), x, nil
	default:
		return nil, nil, nil
	}
	if info.Type == nil {
		return nil, nil, nil
	}
	return info.Type, info.Value, info.Traceback
}

// exceptionStr is CPython's str(exception): "" without arguments, str of a
// single argument (repr for KeyError), else str of the argument tuple.
func exceptionStr(v py.Object) string {
	ex, ok := v.(*py.Exception)
	if !ok {
		s, err := py.StrAsString(v)
		if err != nil {
			return v.Type().Name
		}
		return s
	}
	args, _ := ex.Args.(py.Tuple)
	var (
		s   string
		err error
	)
	switch {
	case len(args) == 0:
		return ""
	case len(args) == 1 && py.IsException(py.KeyError, ex.Type()):
		s, err = py.ReprAsString(args[0])
	case len(args) == 1:
		s, err = py.StrAsString(args[0])
	default:
		s, err = py.ReprAsString(args)
	}
	if err != nil {
		return ex.Type().Name
	}
	return s
}

func formatTraceback(typ *py.Type, msg string, tb *py.Traceback) string {
	var b strings.Builder
	b.WriteString("Traceback (most recent call last):\n")
	// gpython links the newest frame first; CPython prints the oldest first.
	var frames []*py.Traceback
	for t := tb; t != nil; t = t.Next {
		frames = append(frames, t)
	}
	for _, t := range frames {
		if t.Frame != nil && t.Frame.Code != nil {
			fmt.Fprintf(&b, "  File %q, line %d, in %s\n", t.Frame.Code.Filename, t.Lineno, t.Frame.Code.Name)
		}
	}
	b.WriteString(typ.Name)
	if msg != "" {
		b.WriteString(": " + msg)
	}
	return b.String()
}

// codeCache keeps compiled modules by file; a changed file (modification
// time or size) is compiled again.
type codeCache struct {
	mu    sync.Mutex
	codes map[string]cachedCode
}

type cachedCode struct {
	mtime time.Time
	size  int64
	code  *py.Code
}

func (c *codeCache) get(path string) (*py.Code, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	cc, ok := c.codes[path]
	c.mu.Unlock()
	if ok && cc.mtime.Equal(fi.ModTime()) && cc.size == fi.Size() {
		return cc.code, nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	code, err := py.Compile(string(src), path, py.ExecMode, 0, true)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.codes == nil {
		c.codes = make(map[string]cachedCode)
	}
	c.codes[path] = cachedCode{mtime: fi.ModTime(), size: fi.Size(), code: code}
	c.mu.Unlock()
	return code, nil
}

// importer is one task's import system: modules come from gpython's
// built-in modules or from .py files along PythonPath (packages included);
// nothing else, so a handler cannot pick up a CPython library gpython would
// only half run.
type importer struct {
	ctx   py.Context
	path  []string
	codes *codeCache
	pkgs  map[string]string // package name -> its directory

	missing     []string // modules not found
	unsupported string   // why gpython cannot run what was imported
}

// Functions of gpython's os module that act on the whole daemon process.
var blockedOS = []string{"_exit", "chdir", "putenv", "unsetenv"}

func (im *importer) builtinImport(self py.Object, args py.Tuple, kwargs py.StringDict) (py.Object, error) {
	kwlist := []string{"name", "globals", "locals", "fromlist", "level"}
	var name, globals, locals, fromlist py.Object
	var level py.Object = py.Int(0)
	if err := py.ParseTupleAndKeywords(args, kwargs, "U|OOOi:__import__", kwlist, &name, &globals, &locals, &fromlist, &level); err != nil {
		return nil, err
	}
	abs := string(name.(py.String))
	if lv := int(level.(py.Int)); lv > 0 {
		g, _ := globals.(py.StringDict)
		base, err := packageOf(g, lv)
		if err != nil {
			return nil, err
		}
		if abs == "" {
			abs = base
		} else {
			abs = base + "." + abs
		}
	}
	mod, err := im.load(abs)
	if err != nil {
		return nil, err
	}
	from, _ := fromlist.(py.Tuple)
	if l, ok := fromlist.(*py.List); ok {
		from = l.Items
	}
	if len(from) == 0 {
		top, _, _ := strings.Cut(abs, ".")
		return im.load(top)
	}
	// "from pkg import sub" imports the submodule when it is not a name
	// defined in the package.
	if _, isPkg := im.pkgs[abs]; isPkg {
		for _, item := range from {
			s, ok := item.(py.String)
			if !ok || s == "*" {
				continue
			}
			if _, ok := mod.Globals[string(s)]; !ok {
				if _, err := im.load(abs + "." + string(s)); err != nil && !py.IsException(py.ImportError, err) {
					return nil, err
				}
			}
		}
	}
	return mod, nil
}

func packageOf(globals py.StringDict, level int) (string, error) {
	var pkg string
	if p, ok := globals["__package__"].(py.String); ok && p != "" {
		pkg = string(p)
	} else if n, ok := globals["__name__"].(py.String); ok {
		pkg = string(n)
		if _, isPkg := globals["__path__"]; !isPkg {
			if i := strings.LastIndexByte(pkg, '.'); i >= 0 {
				pkg = pkg[:i]
			} else {
				pkg = ""
			}
		}
	}
	for ; level > 1; level-- {
		i := strings.LastIndexByte(pkg, '.')
		if i < 0 {
			return "", py.ExceptionNewf(py.ImportError, "attempted relative import beyond top-level package")
		}
		pkg = pkg[:i]
	}
	if pkg == "" {
		return "", py.ExceptionNewf(py.ImportError, "attempted relative import with no known parent package")
	}
	return pkg, nil
}

// load imports a module by absolute dotted name.
func (im *importer) load(name string) (*py.Module, error) {
	if m, err := im.ctx.GetModule(name); err == nil {
		return m, nil
	}
	if impl := py.GetModuleImpl(name); impl != nil {
		m, err := im.ctx.ModuleInit(impl)
		if err != nil {
			return nil, err
		}
		if name == "os" {
			for _, f := range blockedOS {
				f := f
				m.Globals[f] = py.MustNewMethod(f, func(py.Object, py.Tuple) (py.Object, error) {
					im.unsupported = "os." + f + " acts on the whole daemon process, which the embedded executor does not allow"
					return nil, py.ExceptionNewf(py.NotImplementedError, "os.%s is not available in atpd's embedded executor", f)
				}, 0, "not available in atpd's embedded executor")
			}
		}
		return m, nil
	}
	dirs := im.path
	parentName, last := "", name
	var parent *py.Module
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		parentName, last = name[:i], name[i+1:]
		var err error
		if parent, err = im.load(parentName); err != nil {
			return nil, err
		}
		dir, ok := im.pkgs[parentName]
		if !ok {
			im.missing = append(im.missing, name)
			return nil, py.ExceptionNewf(py.ImportError, "No module named '%s'; '%s' is not a package", name, parentName)
		}
		dirs = []string{dir}
	}
	file, pkgDir := "", ""
	for _, d := range dirs {
		if f := filepath.Join(d, last, "__init__.py"); isFile(f) {
			file, pkgDir = f, filepath.Join(d, last)
			break
		}
		if f := filepath.Join(d, last+".py"); isFile(f) {
			file = f
			break
		}
	}
	if file == "" {
		im.missing = append(im.missing, name)
		return nil, py.ExceptionNewf(py.ImportError, "No module named '%s'", name)
	}
	code, err := im.codes.get(file)
	if err != nil {
		if py.IsException(py.SyntaxError, err) {
			im.unsupported = fmt.Sprintf("cannot compile %s: %v", file, strings.TrimSpace(err.Error()))
		} else if im.unsupported == "" {
			im.unsupported = fmt.Sprintf("cannot read %s: %v", file, err)
		}
		return nil, err
	}
	m, err := im.ctx.Store().NewModule(im.ctx, &py.ModuleImpl{Info: py.ModuleInfo{Name: name, FileDesc: file}})
	if err != nil {
		return nil, err
	}
	if pkgDir != "" {
		if im.pkgs == nil {
			im.pkgs = make(map[string]string)
		}
		im.pkgs[name] = pkgDir
		m.Globals["__path__"] = py.NewListFromStrings([]string{pkgDir})
		m.Globals["__package__"] = py.String(name)
	} else {
		m.Globals["__package__"] = py.String(parentName)
	}
	if parent != nil {
		parent.Globals[last] = m
	}
	if _, err := im.ctx.RunCode(code, m.Globals, m.Globals, nil); err != nil {
		return nil, err
	}
	return m, nil
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
