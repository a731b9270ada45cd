package daemon

import (
	"context"
	"strconv"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// The clean-up runs in its own goroutine so that a slow sweep never delays
// pulling, and so that it still runs every SweepInterval while every worker
// is busy (the reference daemon swept only from its pull loop, which blocks
// while its workers are busy).

func (d *Daemon) lastSweepTime() time.Time {
	n := d.lastSweep.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// triggerSweep asks the sweeper for a clean-up without waiting for it. The
// time is recorded at once so that the loop does not ask again while the
// request is pending.
func (d *Daemon) triggerSweep() {
	d.lastSweep.Store(time.Now().UnixNano())
	select {
	case d.sweepNow <- struct{}{}:
	default:
	}
}

func (d *Daemon) sweeper() {
	defer close(d.sweepDone)
	t := time.NewTicker(d.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stopping:
			return
		case <-d.sweepNow:
		case <-t.C:
			if time.Since(d.lastSweepTime()) < d.cfg.SweepInterval/2 {
				continue // the loop asked for one recently
			}
			d.lastSweep.Store(time.Now().UnixNano())
		}
		d.cleanUp()
	}
}

// cleanUp is the reference daemon's cleanup(): re-enqueue zombies, then delete
// retired instances. Errors are logged; the next clean-up tries again.
func (d *Daemon) cleanUp() {
	d.n.sweeps.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
	res, err := d.store.SweepZombies(ctx, djangodb.MsgZombieReenqueued)
	cancel()
	if err != nil {
		d.log.Error("[MASTER] zombie sweep failed", "error", err)
	}
	// A partial result is still worth logging: those rows were written.
	for _, r := range res.Reenqueued {
		d.n.zombiesReenqueued.Add(1)
		d.obs.TaskReenqueued(r.Type)
		d.log.Warn("[MASTER] Task "+refText(r)+" renqueued after timeout!", refAttrs(r)...)
	}
	for _, r := range res.Failed {
		d.n.zombiesFailed.Add(1)
		d.log.Warn("[MASTER] Task "+refText(r)+" failed after timeout: its starts are used up", refAttrs(r)...)
	}
	for _, r := range res.Unstuck {
		d.n.unstuck.Add(1)
		d.obs.TaskReenqueued(r.Type)
		d.log.Warn("[MASTER] Task "+refText(r)+" renqueued: its claim was older than "+djangodb.PullTimeout.String(), refAttrs(r)...)
	}

	ctx, cancel = context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
	gone, err := d.store.DeleteRetired(ctx)
	cancel()
	if err != nil {
		d.log.Error("[MASTER] deleting retired tasks failed", "error", err)
	}
	for _, r := range gone {
		d.n.retired.Add(1)
		d.log.Info("[MASTER] Task "+refText(r)+" deleted after expiration!", refAttrs(r)...)
	}
}

// refText renders "<id>:<Type::identifier>" as the reference's log lines do.
func refText(r djangodb.InstanceRef) string {
	return strconv.FormatInt(r.ID, 10) + ":" + r.String()
}

func refAttrs(r djangodb.InstanceRef) []any {
	return []any{"type", r.Type, "identifier", r.Identifier, "instance_id", r.ID}
}
