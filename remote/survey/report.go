package survey

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"time"
)

// Prices are what an object store charges, in US dollars. A GB is 2^30
// bytes, as AWS bills it.
type Prices struct {
	StorageGBMonth float64 // per GB-month stored
	PutPer1000     float64 // per 1,000 PUT, COPY, POST and LIST requests
	GetPer1000     float64 // per 1,000 GET, HEAD and other requests
	TransferOutGB  float64 // per GB sent out to the internet
}

// DefaultPrices are the public list prices of Amazon S3 Standard in
// us-east-1 (https://aws.amazon.com/s3/pricing/): storage for the first
// 50 TB a month, requests, and transfer out for the first 10 TB a month.
// DELETE requests and transfer in are free. Tiers, free allowances and
// taxes are not modelled.
var DefaultPrices = Prices{
	StorageGBMonth: 0.023,
	PutPer1000:     0.005,
	GetPer1000:     0.0004,
	TransferOutGB:  0.09,
}

const (
	// HoursPerMonth turns byte-hours into GB-months, as the original
	// cassback did: 744 hours, a 31-day month, so a month's GB-months never
	// exceed the GB stored.
	HoursPerMonth = 744
	// ListPage is how many keys one LIST request returns at most.
	ListPage = 1000

	gb = 1 << 30
)

// Hour is the store's usage in one hour (UTC).
type Hour struct {
	Start    time.Time
	Bytes    int64 // stored at the end of the hour
	MaxBytes int64 // the most stored at any moment of the hour
	TransIn  int64 // bytes uploaded
	TransOut int64 // bytes downloaded
	Ops      int64 // survey lines in the hour; 0 for an idle or extrapolated hour
}

// Month sums the hours and requests of one calendar month (UTC).
type Month struct {
	Year  int
	Month time.Month
	Hours int // hours of the month the report covers

	ByteHours         int64 // Σ MaxBytes of its hours
	TransIn, TransOut int64

	Ops map[Op]int64 // survey lines by operation
	// Requests by price class. A listing costs one LIST request per
	// ListPage keys or directories, at least one.
	PutRequests    int64 // PUT, COPY, POST, LIST: stored, conflict, listed, listed-dirs
	GetRequests    int64 // GET, HEAD and others: restored, stat, missing
	DeleteRequests int64 // removed; free on S3
}

// GBMonths is the month's storage as billed: byte-hours / 2^30 / 744.
func (m Month) GBMonths() float64 { return float64(m.ByteHours) / gb / HoursPerMonth }

// Cost is one month's estimated bill, in dollars.
type Cost struct {
	Storage, Put, Get, TransferOut float64
}

// Total is the sum of the parts.
func (c Cost) Total() float64 { return c.Storage + c.Put + c.Get + c.TransferOut }

// Cost prices the month.
func (m Month) Cost(p Prices) Cost {
	return Cost{
		Storage:     m.GBMonths() * p.StorageGBMonth,
		Put:         float64(m.PutRequests) / 1000 * p.PutPer1000,
		Get:         float64(m.GetRequests) / 1000 * p.GetPer1000,
		TransferOut: float64(m.TransOut) / gb * p.TransferOutGB,
	}
}

// Report is a survey summarised by hour and by month.
type Report struct {
	Hours  []Hour  // every hour from the first line's to the last or the extrapolation's
	Months []Month // the months of Hours, in order
}

// FinalBytes is what the store holds at the end of the report.
func (r Report) FinalBytes() int64 {
	if len(r.Hours) == 0 {
		return 0
	}
	return r.Hours[len(r.Hours)-1].Bytes
}

// Summarize buckets events into hours, as the original cassback's
// survey-report did: stored adds N to the bytes held and to transfer in
// (less the size of an object it replaced), restored adds N to transfer
// out, removed subtracts N from the bytes held; MaxBytes is the running
// maximum within the hour. Lines are taken in time order, whatever their
// order in the file. Hours then carry the bytes held forward to the hour
// holding to, if that is later (the extrapolation); a zero to adds none.
func Summarize(events []Event, to time.Time) Report {
	if len(events) == 0 {
		return Report{}
	}
	events = slices.Clone(events)
	slices.SortStableFunc(events, func(a, b Event) int { return a.Time.Compare(b.Time) })

	var r Report
	cur := Hour{Start: hourOf(events[0].Time)}
	next := func() {
		r.Hours = append(r.Hours, cur)
		cur = Hour{Start: cur.Start.Add(time.Hour), Bytes: cur.Bytes, MaxBytes: cur.Bytes}
	}
	type ym struct {
		y int
		m time.Month
	}
	reqs := map[ym]*Month{}
	for _, e := range events {
		for h := hourOf(e.Time); cur.Start.Before(h); {
			next()
		}
		switch e.Op {
		case OpStored:
			cur.Bytes += e.N
			if e.Replaced {
				cur.Bytes -= e.Old
			}
			cur.TransIn += e.N
		case OpRestored:
			cur.TransOut += e.N
		case OpRemoved:
			cur.Bytes -= e.N
		}
		cur.MaxBytes = max(cur.MaxBytes, cur.Bytes)
		cur.Ops++

		k := ym{e.Time.Year(), e.Time.Month()}
		m := reqs[k]
		if m == nil {
			m = &Month{Ops: map[Op]int64{}}
			reqs[k] = m
		}
		m.Ops[e.Op]++
		switch e.Op {
		case OpStored, OpConflict:
			m.PutRequests++
		case OpListed, OpListedDirs:
			m.PutRequests += max(1, (e.N+ListPage-1)/ListPage)
		case OpRestored, OpStat, OpMissing:
			m.GetRequests++
		case OpRemoved:
			m.DeleteRequests++
		}
	}
	for !to.IsZero() && !cur.Start.Add(time.Hour).After(to) {
		next()
	}
	r.Hours = append(r.Hours, cur)

	for _, h := range r.Hours {
		y, mo := h.Start.Year(), h.Start.Month()
		if n := len(r.Months); n == 0 || r.Months[n-1].Year != y || r.Months[n-1].Month != mo {
			m := Month{Year: y, Month: mo, Ops: map[Op]int64{}}
			if q := reqs[ym{y, mo}]; q != nil {
				m.Ops, m.PutRequests, m.GetRequests, m.DeleteRequests = q.Ops, q.PutRequests, q.GetRequests, q.DeleteRequests
			}
			r.Months = append(r.Months, m)
		}
		m := &r.Months[len(r.Months)-1]
		m.Hours++
		m.ByteHours += h.MaxBytes
		m.TransIn += h.TransIn
		m.TransOut += h.TransOut
	}
	return r
}

func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// Write prints the report in the original cassback's layout ("Hours", then
// "Usage summary" by month), followed by request counts and the estimated
// cost of each month at prices p. Only hours with activity are listed
// unless all is set.
func (r Report) Write(w io.Writer, p Prices, all bool) error {
	bw := bufio.NewWriter(w)
	pr := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }

	pr("Hours\n\n")
	pr("%15s %15s %15s %15s %15s %s\n", "Hour", "Bytes", "Max Bytes", "Trans. In", "Trans. Out", "Activity")
	for _, h := range r.Hours {
		if h.Ops > 0 || all {
			pr("%15s %15d %15d %15d %15d %d\n", h.Start.Format("2006-01-02T15:04"), h.Bytes, h.MaxBytes, h.TransIn, h.TransOut, h.Ops)
		}
	}

	pr("\nUsage summary\n\n")
	for _, m := range r.Months {
		pr("For Month %d-%d.\n", m.Year, int(m.Month))
		pr("Byte-Hours   : %25d\n", m.ByteHours)
		pr("GB-Months    : %25.6f\n", m.GBMonths())
		pr("GB Trans in  : %25.2f\n", float64(m.TransIn)/gb)
		pr("GB Trans out : %25.2f\n", float64(m.TransOut)/gb)
	}

	pr("\nRequests\n\n")
	for _, m := range r.Months {
		pr("For Month %d-%d.\n", m.Year, int(m.Month))
		for _, op := range Ops {
			if n := m.Ops[op]; n > 0 {
				pr("%-25s: %21d\n", op, n)
			}
		}
		pr("%-25s: %21d\n", "PUT, COPY, POST, LIST", m.PutRequests)
		pr("%-25s: %21d\n", "GET, HEAD and other", m.GetRequests)
		pr("%-25s: %21d\n", "DELETE (free)", m.DeleteRequests)
	}

	pr("\nEstimated monthly cost\n\n")
	pr("Prices (USD): %s per GB-month, %s per 1,000 PUT/COPY/POST/LIST, %s per 1,000 GET/HEAD/other, %s per GB out\n\n",
		dollars(p.StorageGBMonth), dollars(p.PutPer1000), dollars(p.GetPer1000), dollars(p.TransferOutGB))
	for _, m := range r.Months {
		c := m.Cost(p)
		pr("For Month %d-%d (%d hours).\n", m.Year, int(m.Month), m.Hours)
		pr("%-25s: %21s\n", "Storage", fmt.Sprintf("$%.6f", c.Storage))
		pr("%-25s: %21s\n", "PUT, COPY, POST, LIST", fmt.Sprintf("$%.6f", c.Put))
		pr("%-25s: %21s\n", "GET, HEAD and other", fmt.Sprintf("$%.6f", c.Get))
		pr("%-25s: %21s\n", "Transfer out", fmt.Sprintf("$%.6f", c.TransferOut))
		pr("%-25s: %21s\n", "Total", fmt.Sprintf("$%.6f", c.Total()))
	}
	final := r.FinalBytes()
	pr("\nA full month of storage at the final size (%d bytes, %.2f GB) costs $%.6f.\n",
		final, float64(final)/gb, float64(final)/gb*p.StorageGBMonth)
	return bw.Flush()
}

// dollars prints a price with the digits it has: $0.023, $0.0004, $0.09.
func dollars(v float64) string { return "$" + trimFloat(v) }

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.6f", v)
	for len(s) > 0 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s += "00"
	}
	return s
}
