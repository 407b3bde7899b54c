package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/cassback/cassback/remote"
)

// event is one trace line. Steps record the request's arguments and result
// as plain fields and are formatted only when Trace is called, so tracing
// costs a struct copy per step, not a fmt call.
type event struct {
	kind  evKind
	op    op
	out   outcome
	lost  bool // the response was lost after the request was applied
	more  bool // List: another page follows
	step  int
	at    time.Duration // virtual time since Options.Start
	actor *Actor
	key   string // key, or prefix for List and ListDirs; evJump: the sleepers it wakes
	arg   string // PutIf: ifMatch; List: the key the page starts after
	etag  string
	x, y  int64         // Put, PutIf: size; Get: offset, length; DeleteMany: keys; sleep: its start
	n     int           // results: bytes, keys or dirs; for a delayed request its due step
	from  int           // a delayed request that landed: the step that sent it
	err   error         // outFailed; evReturn: what the actor returned
	dur   time.Duration // evSpawn: skew; evAdvance, evJump: how far time moved
}

type evKind uint8

const (
	evRequest evKind = iota
	evSpawn
	evReturn
	evPause
	evResume
	evCrash
	evAdvance
	evJump // Step moved time to wake a sleeper
)

type outcome uint8

const (
	outOK outcome = iota
	outNotFound
	outPrecondition
	outInvalidRange
	outFailed
	outCanceled
	outUnsupported
	outChecked
	outUnavailable
	outDelayed
)

func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return outOK
	case errors.Is(err, fs.ErrNotExist):
		return outNotFound
	case errors.Is(err, remote.ErrPrecondition):
		return outPrecondition
	case errors.Is(err, remote.ErrInvalidRange):
		return outInvalidRange
	}
	return outFailed
}

func (w *World) requestEvent(a *Actor, r *request) event {
	ev := event{kind: evRequest, op: r.op, actor: a, key: r.key}
	switch r.op {
	case opPut:
		ev.x = int64(len(r.data))
	case opPutIf:
		ev.x, ev.arg = int64(len(r.data)), r.ifMatch
	case opGet:
		ev.x, ev.y = r.offset, r.length
	case opList:
		ev.arg = r.after
	case opDeleteMany:
		ev.x = int64(len(r.keys))
	case opSleep:
		ev.x = int64(r.since)
	}
	return ev
}

func (ev *event) setResult(r *request) {
	ev.out = outcomeOf(r.err)
	if ev.out == outFailed {
		ev.err = r.err
	}
	ev.etag = r.etag
	switch r.op {
	case opGet:
		ev.n = len(r.body)
	case opStat:
		ev.n, ev.etag = int(r.info.Size), r.info.ETag
	case opList:
		ev.n, ev.more = len(r.infos), r.more
	case opListDirs:
		ev.n = len(r.dirs)
	}
}

// noteLocked adds ev to the trace, stamped with the step and virtual time.
func (w *World) noteLocked(ev event) {
	ev.step = w.steps
	ev.at = time.Duration(w.elapsed.Load())
	w.trace.add(ev)
}

// Trace returns the trace: a header with the seed, then one short line per
// step (and per Spawn, return, Pause, Resume, Crash, Advance and jump of
// time to wake a sleeper), oldest first, the latest Options.TraceLimit
// lines only. A sleep shows as a step when it ends.
func (w *World) Trace() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "sim seed %d: %d steps, %d actors, virtual time %s\n",
		w.opts.Seed, w.steps, w.spawned, w.Now().Format(time.RFC3339Nano))
	if w.trace.dropped > 0 {
		fmt.Fprintf(&b, "(%d earlier lines dropped)\n", w.trace.dropped)
	}
	w.trace.each(func(ev *event) { ev.format(&b) })
	return b.String()
}

func (ev *event) format(b *strings.Builder) {
	name := "-"
	if ev.actor != nil {
		name = ev.actor.name
	}
	fmt.Fprintf(b, "%6d %-10s %-10s ", ev.step, "+"+ev.at.String(), name)
	switch ev.kind {
	case evSpawn:
		b.WriteString("spawn")
		if ev.dur != 0 {
			fmt.Fprintf(b, " skew %v", ev.dur)
		}
	case evReturn:
		b.WriteString("returned")
		if ev.err != nil {
			fmt.Fprintf(b, ": %s", oneLine(ev.err.Error()))
		}
	case evPause:
		b.WriteString("paused")
	case evResume:
		b.WriteString("resumed")
	case evCrash:
		b.WriteString("crashed")
		if ev.op == opSleep {
			fmt.Fprintf(b, " while asleep (sleep %s)", ev.key)
		} else if ev.op != 0 {
			fmt.Fprintf(b, "; its pending %s %s is not applied", ev.op, ev.key)
		}
	case evAdvance:
		fmt.Fprintf(b, "advance %v", ev.dur)
	case evJump:
		fmt.Fprintf(b, "advance %v to wake %s", ev.dur, ev.key)
	case evRequest:
		ev.formatRequest(b)
	}
	b.WriteByte('\n')
}

func (ev *event) formatRequest(b *strings.Builder) {
	key := ev.key
	if key == "" {
		key = `""`
	}
	b.WriteString(ev.op.String())
	b.WriteByte(' ')
	b.WriteString(key)
	switch ev.op {
	case opPut:
		fmt.Fprintf(b, " %dB", ev.x)
	case opPutIf:
		if ev.arg == "" {
			fmt.Fprintf(b, " %dB if-none-match", ev.x)
		} else {
			fmt.Fprintf(b, " %dB if-match %s", ev.x, ev.arg)
		}
	case opGet:
		if ev.x != 0 || ev.y >= 0 {
			fmt.Fprintf(b, " [%d,%d]", ev.x, ev.y)
		}
	case opList:
		if ev.arg != "" {
			fmt.Fprintf(b, " after %s", ev.arg)
		}
	case opDeleteMany:
		if ev.x > 1 {
			fmt.Fprintf(b, " +%d", ev.x-1)
		}
	case opSleep:
		fmt.Fprintf(b, " from +%v", time.Duration(ev.x))
	}
	if ev.from > 0 {
		fmt.Fprintf(b, " (delayed from step %d)", ev.from)
	}
	b.WriteString(": ")
	ev.formatOutcome(b)
}

// formatOutcome writes what became of a request.
func (ev *event) formatOutcome(b *strings.Builder) {
	switch ev.out {
	case outOK:
		switch ev.op {
		case opPut, opPutIf:
			fmt.Fprintf(b, "ok etag %s", ev.etag)
		case opGet, opStat:
			fmt.Fprintf(b, "ok %dB etag %s", ev.n, ev.etag)
		case opList:
			fmt.Fprintf(b, "%d keys", ev.n)
			if ev.more {
				b.WriteString(", more")
			}
		case opListDirs:
			fmt.Fprintf(b, "%d dirs", ev.n)
		case opSleep:
			b.WriteString("woke")
		default:
			b.WriteString("ok")
		}
	case outNotFound:
		b.WriteString("not found")
	case outPrecondition:
		b.WriteString("precondition failed")
	case outInvalidRange:
		b.WriteString("invalid range")
	case outFailed:
		fmt.Fprintf(b, "error: %s", oneLine(ev.err.Error()))
	case outCanceled:
		if ev.op == opSleep {
			b.WriteString("canceled")
		} else {
			b.WriteString("canceled, not applied")
		}
	case outUnsupported:
		b.WriteString("unsupported")
	case outChecked:
		b.WriteString("condition holds, write pending")
	case outUnavailable:
		b.WriteString("FAULT unavailable, not applied")
	case outDelayed:
		fmt.Fprintf(b, "FAULT timed out, lands by step %d", ev.n)
	}
	if ev.lost {
		b.WriteString("; FAULT response lost")
	}
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// ring keeps the latest limit events (all of them if limit < 0).
type ring struct {
	limit   int
	buf     []event
	next    int // the oldest event once buf is full
	dropped int
}

func (r *ring) add(ev event) {
	if r.limit < 0 || len(r.buf) < r.limit {
		r.buf = append(r.buf, ev)
		return
	}
	r.buf[r.next] = ev
	r.next = (r.next + 1) % r.limit
	r.dropped++
}

func (r *ring) each(fn func(*event)) {
	for i := range r.buf {
		fn(&r.buf[(r.next+i)%len(r.buf)])
	}
}
