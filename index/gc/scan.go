package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cassback/cassback/remote"
)

// scanKey records the last purge that listed every pack of the store: its
// store time is the object's, its content says what the scan found. A
// purge lists every pack when the record is missing, older than
// Options.ScanEvery, or unreadable, or when asked (Collector.ScanPacks);
// otherwise it judges packs from the index files (design §4.3 step 2,
// "Scans"). The record is an economy, never a safety: a purge that does
// not scan finds no orphan to delete, and confirms every pack it keeps
// instead of one it deletes.
const scanKey = "gc/scan"

// scanFormat is the version of the scan record.
const scanFormat = 1

// scanRecord is the content of scanKey.
type scanRecord struct {
	Format  int   `json:"format"`
	Packs   int   `json:"packs"`   // packs listed
	Orphans int   `json:"orphans"` // of them, in no index file
	Bytes   int64 `json:"bytes"`   // their stored size
}

// scanDue reports whether a purge looking at the store at now must list
// every pack, and why (or why not).
func (c *Collector) scanDue(ctx context.Context, now time.Time, o Options) (bool, string, error) {
	if c.ScanPacks {
		return true, "asked to scan", nil
	}
	if o.ScanEvery == 0 {
		return true, "every purge scans", nil
	}
	var rec scanRecord
	info, err := getJSON(ctx, c.Store, scanKey, &rec)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, "no purge has listed every pack", nil
	case err != nil && ctx.Err() != nil:
		return false, "", err
	case err != nil || rec.Format != scanFormat:
		return true, fmt.Sprintf("%s is unreadable", scanKey), nil
	}
	if age := now.Sub(info.ModTime); age >= o.ScanEvery || age < 0 {
		return true, fmt.Sprintf("the last scan was %v ago (every %v)", age.Round(time.Second), o.ScanEvery), nil
	}
	return false, fmt.Sprintf("the last scan was %v ago (every %v)", now.Sub(info.ModTime).Round(time.Second), o.ScanEvery), nil
}

// recordScan writes the scan record after a purge that listed every pack
// and finished.
func recordScan(ctx context.Context, st remote.Store, rec scanRecord) error {
	rec.Format = scanFormat
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := st.Put(ctx, scanKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write %s: %w", scanKey, err)
	}
	return nil
}
