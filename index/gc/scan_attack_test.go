package gc

// Attacks on the scan record (scan.go). Tests named TestScanAttack…Holds
// document attacks the code withstood; the purges between scans are
// attacked in the root package (scan_attack_test.go).

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// skewedRecord shows gc/scan with its store time moved by skew, as a
// store whose clock jumped, or a record copied in from elsewhere, would.
type skewedRecord struct {
	remote.Store
	skew time.Duration
}

func (s skewedRecord) Stat(ctx context.Context, key string) (remote.Info, error) {
	i, err := s.Store.Stat(ctx, key)
	if key == scanKey {
		i.ModTime = i.ModTime.Add(s.skew)
	}
	return i, err
}

// TestScanAttackRecordHolds: a purge decides whether to list every pack
// from gc/scan alone, so the record is what an attacker of the economy
// would forge: dated in the future (a skewed store clock; a purge between
// scans must never trust a record it cannot place), garbage, another
// format, empty, a JSON null, exactly ScanEvery old. Every doubtful record
// means a scan; only a readable record younger than ScanEvery spares one.
// (A forged fresh record only spares scans: a purge between scans
// confirms what it deletes, TestHole10UnconfirmedKeepers and the root
// package's TestScanAttack… tests.) It held.
func TestScanAttackRecordHolds(t *testing.T) {
	ctx := t.Context()
	good := `{"format":1,"packs":3,"orphans":0,"bytes":99}`
	const every = 7 * 24 * time.Hour
	for _, tc := range []struct {
		name   string
		record string // "" for none
		skew   time.Duration
		opts   Options
		asked  bool
		scan   bool
	}{
		{name: "none", scan: true},
		{name: "fresh", record: good},
		{name: "asked", record: good, asked: true, scan: true},
		{name: "every purge", record: good, opts: Options{ScanEvery: -1}, scan: true},
		{name: "a second in the future", record: good, skew: time.Second, scan: true},
		{name: "a year in the future", record: good, skew: 365 * 24 * time.Hour, scan: true},
		{name: "just younger", record: good, skew: -every + time.Minute},
		{name: "exactly due", record: good, skew: -every, scan: true},
		{name: "long due", record: good, skew: -10 * every, scan: true},
		{name: "garbage", record: "\x00\xffnot json", scan: true},
		{name: "empty", record: " ", scan: true},
		{name: "null", record: "null", scan: true},
		{name: "other format", record: `{"format":2}`, scan: true},
		{name: "no format", record: `{"packs":3}`, scan: true},
		{name: "too large", record: `{"format":1,"x":"` + strings.Repeat("a", maxObject) + `"}`, scan: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ls, err := local.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			st := skewedRecord{Store: ls, skew: tc.skew}
			if tc.record != "" {
				if err := st.Put(ctx, scanKey, bytes.NewReader([]byte(tc.record)), int64(len(tc.record))); err != nil {
					t.Fatal(err)
				}
			}
			now, err := StoreNow(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			c := &Collector{Store: st, ScanPacks: tc.asked}
			o := tc.opts
			if o.ScanEvery == 0 {
				o.ScanEvery = every
			}
			scan, why, err := c.scanDue(ctx, now, o.WithDefaults())
			if err != nil {
				t.Fatal(err)
			}
			if scan != tc.scan {
				t.Errorf("scan = %v (%s), want %v", scan, why, tc.scan)
			}
		})
	}
}
