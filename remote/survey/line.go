package survey

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cassback/cassback/remote"
)

// Op is the operation a survey line records: what a real store would have
// been asked to do.
type Op string

// The operations, with the request a real object store would have served.
const (
	OpStored     Op = "stored"      // PUT; N = bytes uploaded
	OpRestored   Op = "restored"    // GET; N = bytes returned
	OpRemoved    Op = "removed"     // DELETE; N = bytes freed (0 if nothing was there)
	OpStat       Op = "stat"        // HEAD; N = the object's size
	OpMissing    Op = "missing"     // GET or HEAD of a key with no object; N = 0
	OpConflict   Op = "conflict"    // conditional PUT refused (HTTP 412); N = 0
	OpListed     Op = "listed"      // LIST; N = keys returned
	OpListedDirs Op = "listed-dirs" // LIST with a delimiter; N = directories returned
)

// Ops lists every operation, in the order reports show them.
var Ops = []Op{OpStored, OpRestored, OpRemoved, OpStat, OpMissing, OpConflict, OpListed, OpListedDirs}

func (o Op) valid() bool {
	for _, k := range Ops {
		if o == k {
			return true
		}
	}
	return false
}

// isList reports whether o names a prefix rather than a key.
func (o Op) isList() bool { return o == OpListed || o == OpListedDirs }

// TimeLayout is the time of a survey line: UTC with microseconds, fixed
// width, so that lines sort by time as text too.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Event is one line of a survey file:
//
//	2026-11-26T01:02:03.123456Z stored packs/ab/ab12… 33554432
//	2026-11-26T01:02:04.000000Z stored sessions/h1/s1 120 replaced 118
//	2026-11-26T01:02:05.000000Z listed index/* 12
//
// Fields are separated by one space: the time, the operation, the key (for
// listed and listed-dirs the prefix followed by '*', so the empty prefix is
// "*"), and N. A stored line that replaced an object ends with "replaced"
// and the replaced object's size. Keys cannot contain spaces or '*'.
type Event struct {
	Time     time.Time
	Op       Op
	Key      string // the object's key; for listed ops the prefix, without the '*'
	N        int64  // bytes, or keys or directories for listed ops
	Replaced bool   // stored over an existing object (stored only)
	Old      int64  // the size of the replaced object
}

// AppendLine appends e as one survey line, with its newline.
func (e Event) AppendLine(b []byte) []byte {
	b = e.Time.UTC().AppendFormat(b, TimeLayout)
	b = append(b, ' ')
	b = append(b, e.Op...)
	b = append(b, ' ')
	b = append(b, e.Key...)
	if e.Op.isList() {
		b = append(b, '*')
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.N, 10)
	if e.Replaced {
		b = append(b, " replaced "...)
		b = strconv.AppendInt(b, e.Old, 10)
	}
	return append(b, '\n')
}

// String returns e's line without the newline.
func (e Event) String() string {
	b := e.AppendLine(nil)
	return string(b[:len(b)-1])
}

// ParseLine decodes one survey line (without its newline). The error names
// the problem, not the line number, which only the caller knows.
func ParseLine(line string) (Event, error) {
	f := strings.Split(line, " ")
	if len(f) != 4 && len(f) != 6 {
		return Event{}, fmt.Errorf("want 4 fields (time operation key bytes) or 6 (... replaced bytes), got %d", len(f))
	}
	var e Event
	t, err := time.Parse(time.RFC3339Nano, f[0])
	if y := t.UTC().Year(); err == nil && (y < 1 || y > 9999) {
		err = errors.New("year out of range")
	}
	if err != nil {
		return Event{}, fmt.Errorf("time %q: want RFC 3339 UTC such as 2026-11-26T01:02:03.123456Z", short(f[0]))
	}
	e.Time = t.UTC()
	e.Op = Op(f[1])
	if !e.Op.valid() {
		return Event{}, fmt.Errorf("unknown operation %q", short(f[1]))
	}
	e.Key = f[2]
	if e.Op.isList() {
		p, ok := strings.CutSuffix(e.Key, "*")
		if !ok {
			return Event{}, fmt.Errorf("%s prefix %q: want it followed by '*'", e.Op, short(e.Key))
		}
		if err := remote.ValidPrefix(p); err != nil {
			return Event{}, err
		}
		if e.Op == OpListedDirs && p != "" && !strings.HasSuffix(p, "/") {
			return Event{}, fmt.Errorf("listed-dirs prefix %q: want \"\" or one ending in '/'", short(p))
		}
		e.Key = p
	} else if err := remote.ValidKey(e.Key); err != nil {
		return Event{}, err
	}
	if e.N, err = parseCount(f[3]); err != nil {
		return Event{}, err
	}
	if len(f) == 6 {
		if f[4] != "replaced" || e.Op != OpStored {
			return Event{}, fmt.Errorf("unexpected %q after the byte count (only stored lines end with \"replaced N\")", short(f[4]))
		}
		e.Replaced = true
		if e.Old, err = parseCount(f[5]); err != nil {
			return Event{}, err
		}
	}
	if (e.Op == OpMissing || e.Op == OpConflict) && e.N != 0 {
		return Event{}, fmt.Errorf("%s line with %d bytes, want 0", e.Op, e.N)
	}
	return e, nil
}

func parseCount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("count %q: want a whole number of at least 0", short(s))
	}
	return n, nil
}

// short keeps error messages about hostile input to one short line.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// maxLine bounds a line: a key is at most 1024 bytes, so a valid line is
// under 1100.
const maxLine = 64 << 10

// Parse reads a survey file: one Event per line. Blank lines and lines
// starting with '#' (notes a person added) are skipped. The first malformed
// line stops it with an error naming its line number.
func Parse(r io.Reader) ([]Event, error) {
	var events []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || line[0] == '#' {
			continue
		}
		e, err := ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxLine)
		}
		return nil, err
	}
	return events, nil
}
