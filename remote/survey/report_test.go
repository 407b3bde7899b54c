package survey

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// The survey of the report tests, in units of G = 2^30 = 1073741824 bytes.
// Lines 3 and 4 are out of time order, as lines of two processes sharing a
// survey file can be; the report sorts them. Hour 22 shows the original's
// running-maximum bug fixed: after 4G, -1G and +0.5G its max is 4G (the
// original computed max(3G, 3.5G) = 3.5G).
const reportSurvey = `# a note
2026-01-31T22:10:00.000000Z stored packs/aa/p1 1073741824
2026-01-31T22:20:00.000000Z stored packs/aa/p2 3221225472
2026-01-31T22:55:00.000000Z stored packs/aa/p3 536870912
2026-01-31T22:50:00.000000Z removed packs/aa/p1 1073741824

2026-02-01T00:05:00.000000Z restored packs/aa/p2 536870912
2026-02-01T00:06:00.000000Z stored config 100
2026-02-01T00:07:00.000000Z stored config 40 replaced 100
2026-02-01T00:08:00.000000Z listed packs/* 2500
2026-02-01T00:09:00.000000Z listed-dirs manifests/* 0
2026-02-01T00:10:00.000000Z stat config 40
2026-02-01T00:11:00.000000Z missing nothing 0
2026-02-01T00:12:00.000000Z conflict config 0
`

// reportTo extrapolates the survey to 03:30, so the report ends with the
// hour 03:00.
var reportTo = time.Date(2026, 2, 1, 3, 30, 0, 0, time.UTC)

func reportEvents(t *testing.T) []Event {
	t.Helper()
	events, err := Parse(strings.NewReader(reportSurvey))
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func TestSummarizeHours(t *testing.T) {
	r := Summarize(reportEvents(t), reportTo)
	const (
		g35    = 3758096384 // 3.5G held after hour 22: 1G + 3G + 0.5G - 1G
		g4     = 4294967296 // 4G, the most held in hour 22 (after p2)
		g45    = 4831838208 // 4.5G uploaded in hour 22: 1G + 3G + 0.5G
		feb    = g35 + 40   // config stored at 100 bytes, then replaced by 40
		febMax = g35 + 100  // the most held in hour 00, before the replacement
		halfG  = 536870912
	)
	jan31 := func(h int) time.Time { return time.Date(2026, 1, 31, h, 0, 0, 0, time.UTC) }
	feb1 := func(h int) time.Time { return time.Date(2026, 2, 1, h, 0, 0, 0, time.UTC) }
	want := []Hour{
		{Start: jan31(22), Bytes: g35, MaxBytes: g4, TransIn: g45, Ops: 4},
		{Start: jan31(23), Bytes: g35, MaxBytes: g35},                                         // idle
		{Start: feb1(0), Bytes: feb, MaxBytes: febMax, TransIn: 140, TransOut: halfG, Ops: 8}, // 100 + 40 in
		{Start: feb1(1), Bytes: feb, MaxBytes: feb},                                           // extrapolated
		{Start: feb1(2), Bytes: feb, MaxBytes: feb},
		{Start: feb1(3), Bytes: feb, MaxBytes: feb},
	}
	if len(r.Hours) != len(want) {
		t.Fatalf("got %d hours, want %d: %+v", len(r.Hours), len(want), r.Hours)
	}
	for i, h := range r.Hours {
		if h != want[i] {
			t.Errorf("hour %d:\n got %+v\nwant %+v", i, h, want[i])
		}
	}
	if got := r.FinalBytes(); got != feb {
		t.Errorf("FinalBytes: got %d, want %d", got, int64(feb))
	}
}

func TestSummarizeMonths(t *testing.T) {
	r := Summarize(reportEvents(t), reportTo)
	if len(r.Months) != 2 {
		t.Fatalf("got %d months, want 2", len(r.Months))
	}
	jan, feb := r.Months[0], r.Months[1]
	for _, tc := range []struct {
		name      string
		got, want int64
	}{
		{"January hours", int64(jan.Hours), 2},
		{"January byte-hours", jan.ByteHours, 8053063680},   // 4G + 3.5G = 7.5G
		{"January trans in", jan.TransIn, 4831838208},       // 4.5G
		{"January trans out", jan.TransOut, 0},              //
		{"January PUT-class", jan.PutRequests, 3},           // 3 stored
		{"January GET-class", jan.GetRequests, 0},           //
		{"January DELETE", jan.DeleteRequests, 1},           // 1 removed
		{"February hours", int64(feb.Hours), 4},             // 00 to 03
		{"February byte-hours", feb.ByteHours, 15032385756}, // (3.5G+100) + 3 × (3.5G+40) = 14G + 220
		{"February trans in", feb.TransIn, 140},             // 100 + 40
		{"February trans out", feb.TransOut, 536870912},     // 0.5G restored
		{"February PUT-class", feb.PutRequests, 7},          // 2 stored + 1 conflict + 3 pages of 2500 keys + 1 page of 0 dirs
		{"February GET-class", feb.GetRequests, 3},          // restored, stat, missing
		{"February DELETE", feb.DeleteRequests, 0},
		{"February stored lines", feb.Ops[OpStored], 2},
		{"February listed lines", feb.Ops[OpListed], 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, tc.got, tc.want)
		}
	}

	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
			t.Errorf("%s: got %.15g, want %.15g", what, got, want)
		}
	}
	// 7.5 / 744
	near("January GB-months", jan.GBMonths(), 0.010080645161290322)
	// (14 + 220/2^30) / 744
	near("February GB-months", feb.GBMonths(), 0.018817204576466354)

	c := jan.Cost(DefaultPrices)
	near("January storage", c.Storage, 0.00023185483870967743) // 0.023 × 7.5 / 744
	near("January PUT", c.Put, 0.000015)                       // 3 × 0.005 / 1000
	near("January total", c.Total(), 0.0002468548387096774)
	c = feb.Cost(DefaultPrices)
	near("February storage", c.Storage, 0.0004327957052587261) // 0.023 × 0.018817204576466354
	near("February PUT", c.Put, 0.000035)                      // 7 × 0.005 / 1000
	near("February GET", c.Get, 0.0000012)                     // 3 × 0.0004 / 1000
	near("February transfer out", c.TransferOut, 0.045)        // 0.5 GB × 0.09
	near("February total", c.Total(), 0.045468995705258725)
}

func TestSummarizeExtrapolation(t *testing.T) {
	events := reportEvents(t)
	for _, tc := range []struct {
		name  string
		to    time.Time
		hours int
	}{
		{"none", time.Time{}, 3},
		{"before the last line", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 3},
		{"within the last hour", time.Date(2026, 2, 1, 0, 59, 59, 0, time.UTC), 3},
		{"at the next hour", time.Date(2026, 2, 1, 1, 0, 0, 0, time.UTC), 4},
		{"a day on", time.Date(2026, 2, 2, 0, 30, 0, 0, time.UTC), 3 + 24},
	} {
		r := Summarize(events, tc.to)
		if len(r.Hours) != tc.hours {
			t.Errorf("%s: got %d hours, want %d", tc.name, len(r.Hours), tc.hours)
		}
	}
	if r := Summarize(nil, reportTo); len(r.Hours) != 0 || r.FinalBytes() != 0 {
		t.Errorf("no lines: got %d hours, %d bytes; want none", len(r.Hours), r.FinalBytes())
	}
}

// wantReport is worked out by hand from reportSurvey (see the tests above
// for each figure); the layout follows the original cassback's.
const wantReport = `Hours

           Hour           Bytes       Max Bytes       Trans. In      Trans. Out Activity
2026-01-31T22:00      3758096384      4294967296      4831838208               0 4
2026-02-01T00:00      3758096424      3758096484             140       536870912 8

Usage summary

For Month 2026-1.
Byte-Hours   :                8053063680
GB-Months    :                  0.010081
GB Trans in  :                      4.50
GB Trans out :                      0.00
For Month 2026-2.
Byte-Hours   :               15032385756
GB-Months    :                  0.018817
GB Trans in  :                      0.00
GB Trans out :                      0.50

Requests

For Month 2026-1.
stored                   :                     3
removed                  :                     1
PUT, COPY, POST, LIST    :                     3
GET, HEAD and other      :                     0
DELETE (free)            :                     1
For Month 2026-2.
stored                   :                     2
restored                 :                     1
stat                     :                     1
missing                  :                     1
conflict                 :                     1
listed                   :                     1
listed-dirs              :                     1
PUT, COPY, POST, LIST    :                     7
GET, HEAD and other      :                     3
DELETE (free)            :                     0

Estimated monthly cost

Prices (USD): $0.023 per GB-month, $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000 GET/HEAD/other, $0.09 per GB out

For Month 2026-1 (2 hours).
Storage                  :             $0.000232
PUT, COPY, POST, LIST    :             $0.000015
GET, HEAD and other      :             $0.000000
Transfer out             :             $0.000000
Total                    :             $0.000247
For Month 2026-2 (4 hours).
Storage                  :             $0.000433
PUT, COPY, POST, LIST    :             $0.000035
GET, HEAD and other      :             $0.000001
Transfer out             :             $0.045000
Total                    :             $0.045469

A full month of storage at the final size (3758096424 bytes, 3.50 GB) costs $0.080500.
`

func TestReportWrite(t *testing.T) {
	var b bytes.Buffer
	if err := Summarize(reportEvents(t), reportTo).Write(&b, DefaultPrices, false); err != nil {
		t.Fatal(err)
	}
	if b.String() != wantReport {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), wantReport)
	}
	b.Reset()
	if err := Summarize(reportEvents(t), reportTo).Write(&b, DefaultPrices, true); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"2026-01-31T23:00", "2026-02-01T03:00"} {
		if !strings.Contains(b.String(), "\n"+row+" ") {
			t.Errorf("report with extrapolations: no row %s", row)
		}
	}
}
