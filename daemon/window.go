package daemon

import "time"

// RunWindow is how long atpd lets a handler of a type with this timeout
// run, from its start or its last status write, before it cancels the run
// (with the default deadline margin): the timeout minus a margin of a
// tenth of it, between 1 s and 10 s, so that the outcome is written before
// a zombie sweep would take the task. `atpd check` compares the run times
// of a history with it.
func RunWindow(timeout time.Duration) time.Duration { return Config{}.runWindow(timeout) }
