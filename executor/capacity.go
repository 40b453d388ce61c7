package executor

import (
	"cmp"
	"math"
	"slices"
)

// An executor serving several coordinators splits its capacity between
// them by demand: each coordinator with an open stream may keep what it
// has in flight here and gets a fair part of the free slots. A busy
// coordinator beside idle ones can so use all but the idle ones' minimum,
// and the shares are announced again (in a heartbeat) whenever they
// change, so the busy one learns of freed room at once.
//
// Shares travel asynchronously: a coordinator may dispatch on a share the
// executor has just lowered, and the shares together may then exceed the
// capacity for a moment. The executor never runs more than its capacity
// anyway: a step that finds every slot taken waits in a queue for the next
// one instead of being refused, since it was sent in good faith. Only a
// stream that has more than the whole capacity in flight breaks the
// protocol, and that step is refused as over capacity.

// splitCapacity is each coordinator's share of capacity. inflight holds the
// steps admitted on each connected coordinator's streams and not yet
// answered; busy counts every admitted step, including those of streams
// already gone, which hold their slots until they finish. The free slots,
// capacity minus busy, are split evenly, and the remainder goes first to
// the coordinators with the least in flight (then by id, so the split is
// stable). Every coordinator gets at least 1, because a heartbeat capacity
// of 0 means "the whole capacity".
func splitCapacity(capacity, busy int, inflight map[string]int) map[string]int {
	shares := make(map[string]int, len(inflight))
	if len(inflight) == 0 {
		return shares
	}
	ids := make([]string, 0, len(inflight))
	for id := range inflight {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(inflight[a], inflight[b]), cmp.Compare(a, b))
	})
	free := max(capacity-busy, 0)
	each, extra := free/len(ids), free%len(ids)
	for i, id := range ids {
		share := inflight[id] + each
		if i < extra {
			share++
		}
		shares[id] = max(share, 1)
	}
	return shares
}

// sharesLocked is the current split between the coordinators with an open
// stream. The caller holds e.mu.
func (e *Executor) sharesLocked() map[string]int {
	inflight := make(map[string]int, len(e.sessions))
	for s := range e.sessions {
		inflight[s.coordinatorID] += s.inflight
	}
	return splitCapacity(e.cfg.Capacity, len(e.admitted), inflight)
}

// shareLocked is the share of the coordinator that opened s. The caller
// holds e.mu.
func (e *Executor) shareLocked(s *session) int32 {
	return wireShare(e.sharesLocked()[s.coordinatorID])
}

// wireShare is a share as a heartbeat carries it.
func wireShare(share int) int32 {
	return int32(min(max(share, 1), math.MaxInt32))
}

// reannounceLocked marks every open stream whose coordinator's share is no
// longer the one it was last told, so its sender goroutine sends a fresh
// heartbeat with its next flush. Called after every change to the streams
// or to what is admitted; the caller holds e.mu.
func (e *Executor) reannounceLocked() {
	switch len(e.sessions) {
	case 0:
		return
	case 1:
		// The common case, once per step: no split to compute.
		for s := range e.sessions {
			share := wireShare(s.inflight + max(e.cfg.Capacity-len(e.admitted), 0))
			if !s.closed && share != s.announced {
				s.announce = true
				nudge(s.wake)
			}
		}
		return
	}
	shares := e.sharesLocked()
	for s := range e.sessions {
		if !s.closed && wireShare(shares[s.coordinatorID]) != s.announced {
			s.announce = true
			nudge(s.wake)
		}
	}
}
