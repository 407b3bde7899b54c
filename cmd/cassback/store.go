package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/throttle"
)

// store opens the object store the global options name, throttled as
// --max-upload-rate, --max-download-rate and --max-requests-per-sec say.
// create is true for backup, the only command that may create a store.
func (g *globals) store(ctx context.Context, create bool) (remote.Store, error) {
	var (
		st  remote.Store
		err error
	)
	switch g.endpoint {
	case "s3":
		st, err = g.openS3(ctx, create)
	case "survey":
		st, err = g.openSurvey(create)
	default:
		st, err = g.openLocal(create)
	}
	if err != nil {
		return nil, err
	}
	return g.throttled(st), nil
}

// Bounds of --max-upload-rate and --max-download-rate, besides 0 (no
// limit): below 1 kB/s a 32 MiB pack would take nine hours; above 1 TB/s
// no link is limited.
const (
	minRate = 1e3
	maxRate = 1e12
)

// setupThrottle parses the throttling options and builds the process's
// Limiter, whose buckets every store it wraps shares (--max-requests-per-sec
// is range-checked with the other numeric options).
func (g *globals) setupThrottle() error {
	up, err := parseRate("max-upload-rate", g.maxUploadRate)
	if err != nil {
		return err
	}
	down, err := parseRate("max-download-rate", g.maxDownloadRate)
	if err != nil {
		return err
	}
	g.limiter = throttle.New(throttle.Config{Upload: up, Download: down, Requests: g.maxRequestsPerSec})
	return nil
}

// parseRate parses the rate option name, giving a one-line usage error
// naming it for a value it cannot read or out of range.
func parseRate(name, s string) (float64, error) {
	r, err := throttle.ParseRate(s)
	if err != nil {
		return 0, usagef("--%s %q: %v", name, s, err)
	}
	if r != 0 && (r < minRate || r > maxRate) {
		return 0, usagef("--%s %s: want 0 (no limit) or %s to %s", name, strings.TrimSpace(s),
			throttle.FormatRate(minRate), throttle.FormatRate(maxRate))
	}
	return r, nil
}

// throttled wraps st with the process's Limiter when it has a limit, and
// says so in the log.
func (g *globals) throttled(st remote.Store) remote.Store {
	if g.limiter == nil {
		return st
	}
	cfg := g.limiter.Config()
	if cfg == (throttle.Config{}) {
		return st
	}
	if g.log != nil {
		g.log.Info("store throttled", "max_upload_rate", throttle.FormatRate(cfg.Upload),
			"max_download_rate", throttle.FormatRate(cfg.Download), "max_requests_per_sec", cfg.Requests)
	}
	return g.limiter.Wrap(st)
}

func (g *globals) openLocal(create bool) (remote.Store, error) {
	if g.backupBase == "" {
		return nil, usagef("--backup-base is required with --endpoint local")
	}
	fi, err := os.Stat(g.backupBase)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("--backup-base %s: not a directory", g.backupBase)
	case errors.Is(err, os.ErrNotExist) && create:
		if err := os.MkdirAll(g.backupBase, 0o755); err != nil {
			return nil, fmt.Errorf("--backup-base %s: %w", g.backupBase, err)
		}
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("--backup-base %s: no such directory", g.backupBase)
	case err != nil:
		return nil, fmt.Errorf("--backup-base %s: %w", g.backupBase, err)
	}
	return local.Open(g.backupBase)
}
