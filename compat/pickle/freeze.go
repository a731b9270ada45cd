package pickle

import "fmt"

// Walk states of a container during freeze.
const (
	walkNew uint8 = iota
	walkOpen
	walkDone
)

// freeze turns the decoding boxes reachable from v into the values
// handlers get (lists into []any, sets into Set, tuples into Tuple) and
// measures the nesting height exactly. The checks made while decoding see
// each container when something is put into it; a container filled after
// it was itself stored elsewhere can make the whole deeper than they saw.
//
// The walk is iterative and visits every container once, so neither a deep
// nor a widely shared (memoised) structure can exhaust the stack or take
// exponential time. Cycles are kept: a list containing itself becomes an
// []any containing itself.
func freeze(v any, maxDepth int32, stop int) (any, error) {
	tooDeep := func() error {
		return &Error{Offset: stop, Opcode: opStop, Err: ErrTooDeep,
			Msg: fmt.Sprintf("containers nested deeper than %d levels", maxDepth)}
	}
	if !isBox(v) {
		return v, nil
	}
	type frame struct {
		node   any
		next   int
		height int32 // highest child seen so far
		extra  any   // scratch slot for children that are never replaced
	}
	open(v)
	stack := []frame{{node: v}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		slot := childSlot(f.node, f.next, &f.extra)
		if slot == nil {
			h := f.height + 1
			if h > maxDepth {
				return nil, tooDeep()
			}
			closeNode(f.node, h)
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				p := &stack[len(stack)-1]
				p.height = max(p.height, h)
			}
			continue
		}
		f.next++
		c := *slot
		fin, h, walk, ok := inspect(c)
		if !ok {
			continue
		}
		*slot = fin
		if h == 1 {
			// Nothing but scalars was ever put into it (any container
			// would have raised its height): nothing to walk.
			if walk == walkNew {
				closeNode(c, 1)
			}
			f.height = max(f.height, 1)
			continue
		}
		switch walk {
		case walkDone:
			f.height = max(f.height, h)
		case walkOpen:
			// A cycle: the value refers to itself, its height is not
			// a nesting the walkers will follow twice.
		default:
			if len(stack) >= int(maxDepth) {
				return nil, tooDeep()
			}
			open(c)
			stack = append(stack, frame{node: c})
		}
	}
	return final(v), nil
}

// inspect returns, for a decoding box, its final value, recorded height and
// walk state, in one type switch (this runs for every value decoded).
func inspect(v any) (fin any, h int32, walk uint8, ok bool) {
	switch b := v.(type) {
	case *listBox:
		if b.items == nil {
			b.items = []any{}
		}
		return b.items, b.height, b.walk, true
	case *tupleBox:
		if b.items == nil {
			b.items = Tuple{}
		}
		return Tuple(b.items), b.height, b.walk, true
	case *setBox:
		if b.items == nil {
			b.items = []any{}
		}
		if b.frozen {
			return FrozenSet(b.items), b.height, b.walk, true
		}
		return Set(b.items), b.height, b.walk, true
	case *Dict:
		return b, b.height, b.walk, b != nil
	case *Object:
		return b, b.height, b.walk, b != nil
	}
	return v, 0, 0, false
}

func isBox(v any) bool {
	switch v.(type) {
	case *listBox, *tupleBox, *setBox, *Dict, *Object:
		return true
	}
	return false
}

func open(v any) {
	switch v := v.(type) {
	case *listBox:
		v.walk = walkOpen
		if v.items == nil {
			v.items = []any{}
		}
	case *tupleBox:
		v.walk = walkOpen
		if v.items == nil {
			v.items = Tuple{}
		}
	case *setBox:
		v.walk = walkOpen
		if v.items == nil {
			v.items = []any{}
		}
	case *Dict:
		v.walk = walkOpen
	case *Object:
		v.walk = walkOpen
	}
}

func closeNode(v any, h int32) {
	switch v := v.(type) {
	case *listBox:
		v.walk, v.height = walkDone, h
	case *tupleBox:
		v.walk, v.height = walkDone, h
	case *setBox:
		v.walk, v.height = walkDone, h
	case *Dict:
		v.walk, v.height = walkDone, h
	case *Object:
		v.walk, v.height = walkDone, h
	}
}

// final is the handler-facing value of a box. Its slice is the box's own
// item slice, so a final value handed out before the walk reached the box
// (a cycle) sees the converted items too.
func final(v any) any {
	switch v := v.(type) {
	case *listBox:
		if v.items == nil {
			v.items = []any{}
		}
		return v.items
	case *tupleBox:
		if v.items == nil {
			v.items = Tuple{}
		}
		return Tuple(v.items)
	case *setBox:
		if v.items == nil {
			v.items = []any{}
		}
		if v.frozen {
			return FrozenSet(v.items)
		}
		return Set(v.items)
	}
	return v
}

// childSlot returns where the i-th child of a container is stored, or nil
// after the last. Dicts held by an Object (its keyword arguments and dict
// items) are returned through scratch: they are containers to walk but are
// never replaced.
func childSlot(v any, i int, scratch *any) *any {
	switch v := v.(type) {
	case *listBox:
		if i < len(v.items) {
			return &v.items[i]
		}
	case *tupleBox:
		if i < len(v.items) {
			return &v.items[i]
		}
	case *setBox:
		if i < len(v.items) {
			return &v.items[i]
		}
	case *Dict:
		if i < 2*len(v.entries) {
			e := &v.entries[i/2]
			if i%2 == 0 {
				return &e.Key
			}
			return &e.Value
		}
	case *Object:
		if i < len(v.Args) {
			return &v.Args[i]
		}
		i -= len(v.Args)
		if i == 0 {
			return &v.State
		}
		i--
		if i < len(v.ListItems) {
			return &v.ListItems[i]
		}
		i -= len(v.ListItems)
		switch {
		case i == 0 && v.Kwargs != nil:
			*scratch = v.Kwargs
			return scratch
		case i == 0:
			*scratch = nil
			return scratch
		case i == 1 && v.DictItems != nil:
			*scratch = v.DictItems
			return scratch
		case i == 1:
			*scratch = nil
			return scratch
		}
	}
	return nil
}
