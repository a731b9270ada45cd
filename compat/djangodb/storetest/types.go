package storetest

import (
	"math"
	"reflect"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
)

func testRegisterType(t *testing.T, e *env) {
	tests := []struct {
		name string
		spec djangodb.TypeSpec
		want TypeRow // ID ignored
	}{
		{"defaults", djangodb.TypeSpec{Handler: "a.b", Timeout: djangodb.DefaultTimeout, TimeRet: djangodb.DefaultTimeRet, MaxRestart: djangodb.DefaultMaxRestart},
			TypeRow{Handler: "a.b", MaxStart: 3, Timeout: 3600, TimeRet: -1}},
		{"negative timeout becomes 0", djangodb.TypeSpec{Handler: "a.b", Timeout: -5, TimeRet: 10, MaxRestart: 1},
			TypeRow{Handler: "a.b", MaxStart: 2, Timeout: 0, TimeRet: 10}},
		{"zero timeret keeps forever", djangodb.TypeSpec{Handler: "a.b", Timeout: 1.5, TimeRet: 0},
			TypeRow{Handler: "a.b", MaxStart: 1, Timeout: 1.5, TimeRet: -1}},
		{"negative timeret keeps forever", djangodb.TypeSpec{Handler: "a.b", Timeout: 7, TimeRet: -3.25, MaxRestart: 4},
			TypeRow{Handler: "a.b", MaxStart: 5, Timeout: 7, TimeRet: -1}},
		{"NaN timeret keeps forever", djangodb.TypeSpec{Handler: "a.b", Timeout: 7, TimeRet: math.NaN()},
			TypeRow{Handler: "a.b", MaxStart: 1, Timeout: 7, TimeRet: -1}},
		{"negative maxrestart starts once", djangodb.TypeSpec{Handler: "x.y.z", Timeout: 60, TimeRet: 600.5, MaxRestart: -2},
			TypeRow{Handler: "x.y.z", MaxStart: 1, Timeout: 60, TimeRet: 600.5}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Identifier = "T" + string(rune('a'+i))
			tc.want.Identifier = tc.spec.Identifier
			got, err := e.store.RegisterType(e.ctx, tc.spec)
			if err != nil {
				t.Fatalf("register %+v: %v", tc.spec, err)
			}
			tc.want.ID = got.ID
			row := TypeRow{ID: got.ID, Identifier: got.Identifier, Handler: got.Handler,
				MaxStart: int64(got.MaxStart), Timeout: got.Timeout, TimeRet: got.TimeRet}
			if row != tc.want {
				t.Errorf("RegisterType returned %+v, want %+v", row, tc.want)
			}
			n := tc.spec.Normalize()
			n.ID = got.ID
			if got != n {
				t.Errorf("RegisterType returned %+v, TypeSpec.Normalize gives %+v", got, n)
			}
			var stored *TypeRow
			for _, r := range e.dump().Types {
				if r.Identifier == tc.spec.Identifier {
					stored = &r
				}
			}
			if stored == nil || *stored != tc.want {
				t.Errorf("stored row %+v, want %+v", stored, tc.want)
			}
			byName, err := e.store.Type(e.ctx, tc.spec.Identifier)
			if err != nil || byName != got {
				t.Errorf("Type(%q) = %+v, %v; want %+v", tc.spec.Identifier, byName, err, got)
			}
		})
	}

	// Registering again updates the row in place: same id, new values, and
	// the instances keep pointing at it.
	first := e.register("Upd", 10, 20, 1)
	id := e.enqueue("Upd", "i1", "")
	second, err := e.store.RegisterType(e.ctx, djangodb.TypeSpec{Identifier: "Upd", Handler: "new.handler", Timeout: 99, TimeRet: -7, MaxRestart: 5})
	if err != nil {
		t.Fatalf("re-register Upd: %v", err)
	}
	want := djangodb.TaskType{ID: first.ID, Identifier: "Upd", Handler: "new.handler", MaxStart: 6, Timeout: 99, TimeRet: -1}
	if second != want {
		t.Errorf("re-register returned %+v, want %+v", second, want)
	}
	all, err := e.store.Types(e.ctx)
	if err != nil {
		t.Fatalf("types: %v", err)
	}
	if len(all) != len(tests)+1 {
		t.Errorf("Types() has %d types, want %d: %+v", len(all), len(tests)+1, all)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Errorf("Types() not ordered by id: %+v", all)
		}
	}
	if !reflect.DeepEqual(all[len(all)-1], want) {
		t.Errorf("Types() last = %+v, want %+v", all[len(all)-1], want)
	}
	if in := e.instance(id); in.TypeID != first.ID || in.Type != "Upd" {
		t.Errorf("instance after re-register: %+v, want type %d Upd", in, first.ID)
	}
}

func testTypeNotFound(t *testing.T, e *env) {
	if _, err := e.store.Type(e.ctx, "Nope"); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("Type(missing) error = %v, want ErrNotFound", err)
	}
	if err := e.store.UnregisterType(e.ctx, "Nope", true); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("UnregisterType(missing) error = %v, want ErrNotFound", err)
	}
	all, err := e.store.Types(e.ctx)
	if err != nil || len(all) != 0 {
		t.Errorf("Types() on empty database = %+v, %v; want none", all, err)
	}
}

func testUnregisterType(t *testing.T, e *env) {
	e.register("Empty", 60, -1, 0)
	e.register("Busy", 60, -1, 0)
	e.register("Other", 60, -1, 0)
	busy := []int64{e.running("Busy", "running")}
	done := e.running("Busy", "done")
	if err := e.store.SetResponse(e.ctx, done, []byte("ok"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	e.setStatus(done, djangodb.Finished, "")
	busy = append(busy, done, e.enqueue("Busy", "waiting", ""))
	other := e.enqueue("Other", "waiting", "")

	if err := e.store.UnregisterType(e.ctx, "Empty", false); err != nil {
		t.Fatalf("unregister type without instances: %v", err)
	}
	if _, err := e.store.Type(e.ctx, "Empty"); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("Type(Empty) after unregister: %v, want ErrNotFound", err)
	}

	before := e.dump()
	err := e.store.UnregisterType(e.ctx, "Busy", false)
	if !isErr(err, djangodb.ErrProtected) {
		t.Fatalf("unregister type with instances, no force: %v, want ErrProtected", err)
	}
	if after := e.dump(); !reflect.DeepEqual(after, before) {
		t.Errorf("refused unregister changed rows:\nbefore %+v\nafter  %+v", before, after)
	}

	if err := e.store.UnregisterType(e.ctx, "Busy", true); err != nil {
		t.Fatalf("forced unregister: %v", err)
	}
	want := before.without(busy...)
	want.Types = keep(before.Types, func(r TypeRow) bool { return r.Identifier != "Busy" })
	if after := e.dump(); !reflect.DeepEqual(after, want) {
		t.Errorf("forced unregister left\n%+v\nwant\n%+v", after, want)
	}
	if in := e.instance(other); in.Type != "Other" || in.Status != djangodb.Accepted {
		t.Errorf("other type's instance after unregister: %+v", in)
	}
}
