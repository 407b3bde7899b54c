// Package hole puts back, for tests only, the garbage-collection holes that
// docs/design.md §4 closes, one switch each, so the simulator and the
// regression tests can show that they find every hole when it is open.
//
// Production code asks On(h) at the one place where the fix and the hole
// differ; nothing but a test ever calls Set, so every switch is off in a
// real run. The cost is one atomic load where a switch is asked.
package hole

import "sync/atomic"

// Hole names one hole.
type Hole int

// The holes, numbered as in the GC-safety issue and docs/design.md §4.7.
const (
	// IndexBeforeSession: the dedup index is loaded when the store is
	// opened, before the backup's session exists and before it lists the
	// condemned sets.
	IndexBeforeSession Hole = iota + 1
	// StaleNotRevoked: at sweep time, sessions that went stale are skipped
	// without being revoked by compare-and-swap.
	StaleNotRevoked
	// PlainFallback: on a store without conditional writes, sessions and
	// the lease fall back to plain PUTs and purge revokes and takes the
	// lease as if they were atomic.
	PlainFallback
	// SkipBadIndex: purge skips an unreadable index file, judges the packs
	// it named as unindexed, and deletes them.
	SkipBadIndex
	// LeaseUnfenced: the purge lease is never renewed and is released by
	// an unconditional delete.
	LeaseUnfenced
	// ClockExemption: a session whose object is newer (Last-Modified) than
	// a condemned set need not acknowledge it.
	ClockExemption
	// CommitUnfenced: a manifest counts as soon as it is written; no
	// compare-and-swap of the session follows it.
	CommitUnfenced
	// NewestByKey: purge keeps the last listed key of a keyspace as its
	// newest backup, whatever it holds.
	NewestByKey
	// StaleGeneration: a sweep deletes packs without advancing the sweep
	// generation, so a writer trusts a cached manifest whose chunks a
	// sweep deleted since.
	StaleGeneration
	// UnconfirmedKeepers: a sweep that did not list the packs deletes a
	// condemned pack without confirming that the pack kept instead of it
	// for a referenced chunk is stored.
	UnconfirmedKeepers
	count
)

var open [count]atomic.Bool

// On reports whether hole h is open. It is false outside tests.
func On(h Hole) bool { return open[h].Load() }

// Set opens or closes hole h and returns a function that restores its
// previous state. Tests only.
func Set(h Hole, on bool) (restore func()) {
	was := open[h].Swap(on)
	return func() { open[h].Store(was) }
}

// All lists every hole, for tests that try each in turn.
func All() []Hole {
	hs := make([]Hole, 0, count-1)
	for h := IndexBeforeSession; h < count; h++ {
		hs = append(hs, h)
	}
	return hs
}

// String names the hole.
func (h Hole) String() string {
	switch h {
	case IndexBeforeSession:
		return "1-index-before-session"
	case StaleNotRevoked:
		return "2-stale-not-revoked"
	case PlainFallback:
		return "3-plain-fallback"
	case SkipBadIndex:
		return "4-skip-bad-index"
	case LeaseUnfenced:
		return "5-lease-unfenced"
	case ClockExemption:
		return "6-clock-exemption"
	case CommitUnfenced:
		return "7-commit-unfenced"
	case NewestByKey:
		return "8-newest-by-key"
	case StaleGeneration:
		return "9-stale-generation"
	case UnconfirmedKeepers:
		return "10-unconfirmed-keepers"
	}
	return "unknown"
}
