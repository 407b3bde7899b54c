package survey

import (
	"strings"
	"testing"
	"time"
)

var validLines = []struct {
	line string
	want Event
}{
	{"2026-11-26T01:02:03.123456Z stored packs/ab/abcd 33554432",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 123456000, time.UTC), Op: OpStored, Key: "packs/ab/abcd", N: 33554432}},
	{"2026-11-26T01:02:03.000000Z stored config 6 replaced 3",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpStored, Key: "config", N: 6, Replaced: true, Old: 3}},
	{"2026-11-26T01:02:03.000000Z stored config 6 replaced 0",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpStored, Key: "config", N: 6, Replaced: true}},
	{"2026-11-26T01:02:03.000000Z listed * 2",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpListed, Key: "", N: 2}},
	{"2026-11-26T01:02:03.000000Z listed manifests/h/ks/2026_11* 12",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpListed, Key: "manifests/h/ks/2026_11", N: 12}},
	{"2026-11-26T01:02:03.000000Z listed-dirs manifests/* 3",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpListedDirs, Key: "manifests/", N: 3}},
	{"2026-11-26T01:02:03.000000Z restored index/h/00ff 440",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpRestored, Key: "index/h/00ff", N: 440}},
	{"2026-11-26T01:02:03.000000Z removed packs/ab/abcd 0",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpRemoved, Key: "packs/ab/abcd"}},
	{"2026-11-26T01:02:03.000000Z stat config 300",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpStat, Key: "config", N: 300}},
	{"2026-11-26T01:02:03.000000Z missing config 0",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpMissing, Key: "config"}},
	{"2026-11-26T01:02:03.000000Z conflict gc/lease 0",
		Event{Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Op: OpConflict, Key: "gc/lease"}},
}

func TestParseLine(t *testing.T) {
	for _, tc := range validLines {
		got, err := ParseLine(tc.line)
		if err != nil {
			t.Errorf("ParseLine(%q): %v", tc.line, err)
			continue
		}
		if !got.Time.Equal(tc.want.Time) || got.Op != tc.want.Op || got.Key != tc.want.Key || got.N != tc.want.N ||
			got.Replaced != tc.want.Replaced || got.Old != tc.want.Old {
			t.Errorf("ParseLine(%q):\n got %+v\nwant %+v", tc.line, got, tc.want)
		}
		if s := got.String(); s != tc.line {
			t.Errorf("String: got %q, want %q", s, tc.line)
		}
	}
	// Other RFC 3339 forms are read, and written back in UTC microseconds.
	e, err := ParseLine("2026-11-26T03:02:03.5+02:00 stat config 1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "2026-11-26T01:02:03.500000Z stat config 1"; e.String() != want {
		t.Errorf("zoned time: got %q, want %q", e.String(), want)
	}
}

func TestParseLineErrors(t *testing.T) {
	const ts = "2026-11-26T01:02:03.000000Z "
	for _, tc := range []struct{ line, want string }{
		{"", "got 1"},
		{ts + "stored a", "got 3"},
		{ts + "stored a  1", "got 5"},
		{ts + "stored a 1 replaced", "got 5"},
		{"2026-11-26 stored a 1", "time"},
		{"yesterday stored a 1", "time"},
		{ts + "sotred a 1", `unknown operation "sotred"`},
		{ts + "stored ../a 1", "invalid key"},
		{ts + "stored a/ 1", "invalid key"},
		{ts + "stored a* 1", "invalid key"},
		{ts + "stored a -1", "count"},
		{ts + "stored a +1", "count"},
		{ts + "stored a 1.5", "count"},
		{ts + "stored a 99999999999999999999", "count"},
		{ts + "stored a 1 replaced x", "count"},
		{ts + "listed index/ 1", "followed by '*'"},
		{ts + "listed .x* 1", "invalid key"},
		{ts + "listed-dirs index/h* 1", "ending in '/'"},
		{ts + "removed a 1 replaced 1", "only stored"},
		{ts + "stored a 1 replaces 1", "only stored"},
		{ts + "missing a 5", "want 0"},
		{ts + "conflict a 5", "want 0"},
	} {
		_, err := ParseLine(tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLine(%q): got error %v, want one containing %q", tc.line, err, tc.want)
		}
	}
}

func TestParseLineNumbers(t *testing.T) {
	good := validLines[0].line
	for _, tc := range []struct {
		text, want string
	}{
		{good + "\n\n# note\n" + good + "\nnot a line\n" + good + "\n", "line 5: "},
		{good + "\r\n" + good + " extra\n", "line 2: "},
		{good + "\n" + good[:40], "line 2: "}, // a line cut short
		{good + "\n" + strings.Repeat("x", maxLine+1) + "\n", "line 2: longer than"},
	} {
		_, err := Parse(strings.NewReader(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse: got error %v, want one starting %q", err, tc.want)
		}
	}
	events, err := Parse(strings.NewReader(good + "\r\n\n  \n# note\n" + good))
	if err != nil || len(events) != 2 {
		t.Errorf("Parse with blank lines, a note and CRLF: got %d events, error %v; want 2", len(events), err)
	}
}

// FuzzParseLine: no input panics, and an accepted line is written back in
// a form that parses to the same line.
func FuzzParseLine(f *testing.F) {
	for _, tc := range validLines {
		f.Add(tc.line)
	}
	f.Add("2026-11-26T03:02:03.5+02:00 stat config 1")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		s := e.String()
		e2, err := ParseLine(s)
		if err != nil {
			t.Fatalf("ParseLine(%q) = %+v, whose line %q does not parse: %v", line, e, s, err)
		}
		if e2.String() != s {
			t.Fatalf("line %q parses and prints as %q", s, e2.String())
		}
	})
}
