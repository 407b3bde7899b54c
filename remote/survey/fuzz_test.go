package survey

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParse reads a hostile survey file, as survey-report does: Parse must
// never panic, every event it returns prints as a line that parses back to
// it, and the report of a file spanning less than a year sums its hours
// into months exactly (the command refuses longer spans before
// summarizing: cmd/cassback checkReportSpan).
func FuzzParse(f *testing.F) {
	var all []byte
	for _, tc := range validLines {
		all = append(all, tc.line+"\n"...)
	}
	f.Add(all)
	f.Add([]byte("# comment\n\n2026-11-26T01:02:03Z stored config 6\r\n2026-11-26T01:02:03Z removed config 6\n"))
	f.Add([]byte("0001-01-01T00:00:00Z stat config 1\n9999-12-31T23:59:59Z stat config 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := Parse(bytes.NewReader(b))
		if err != nil || len(events) == 0 {
			return
		}
		first, last := events[0].Time, events[0].Time
		for _, e := range events {
			back, err := ParseLine(e.String())
			if err != nil || back.String() != e.String() {
				t.Fatalf("event %+v prints as %q, which parses as %+v, %v", e, e.String(), back, err)
			}
			if e.Time.Before(first) {
				first = e.Time
			}
			if e.Time.After(last) {
				last = e.Time
			}
		}
		if last.Sub(first) > 366*24*time.Hour {
			return
		}
		r := Summarize(events, time.Time{})
		hours := 0
		for _, m := range r.Months {
			hours += m.Hours
		}
		if hours != len(r.Hours) {
			t.Fatalf("months hold %d hours, the report %d", hours, len(r.Hours))
		}
		for i := 1; i < len(r.Hours); i++ {
			if !r.Hours[i].Start.Equal(r.Hours[i-1].Start.Add(time.Hour)) {
				t.Fatalf("hour %d starts at %v after %v", i, r.Hours[i].Start, r.Hours[i-1].Start)
			}
		}
	})
}
