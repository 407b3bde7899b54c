// Command gennode writes a realistic Cassandra data directory for tests,
// benchmarks and demos (see package manifest/nodegen).
//
//	gennode -dir DIR [-size 200MB] [-seed N] [-version nb] [-snapshots] [-backups] [-inflight] [-force]
//
// It prints one summary line on stdout. Errors are one line on stderr; the
// exit status is 1 for failures and 2 for usage errors.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
)

func main() {
	os.Exit(exitCode(run(os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// usageError marks errors in the command line (exit status 2).
type usageError struct{ error }

func exitCode(err error, stderr io.Writer) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "gennode: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "gennode: %v\n", err)
		return 1
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gennode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: gennode -dir DIR [-size 200MB] [-seed N] [-version nb] [-snapshots] [-backups] [-inflight] [-force]\n\n")
		fs.PrintDefaults()
	}
	var (
		dir       = fs.String("dir", "", "data directory to create (required; must be empty unless -force)")
		size      = fs.String("size", "200MB", "approximate size of the live SSTables: bytes, or with K, M, G (KiB...), KB, MB, GB (powers of 1000), KiB, MiB, GiB")
		seed      = fs.Uint64("seed", 1, "seed; the same flags give the same tree")
		version   = fs.String("version", "nb", "SSTable version: "+strings.Join(nodegen.Versions(), ", "))
		snapshots = fs.Bool("snapshots", false, "also take a snapshot of the user keyspaces")
		backups   = fs.Bool("backups", false, "turn on incremental backups (hard links in backups/)")
		inflight  = fs.Bool("inflight", false, "leave unfinished flushes, a compaction and a .tmp rewrite behind")
		force     = fs.Bool("force", false, "write into a non-empty -dir (existing files are never replaced)")
		workers   = fs.Int("workers", 0, "goroutines compressing (0: one per CPU)")
		flate     = fs.Int("flate", 0, "compress with compress/flate at this level (1-9) instead of the fast encoder")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *dir == "" {
		return usageError{errors.New("-dir is required")}
	}
	total, err := parseSize(*size)
	if err != nil {
		return usageError{err}
	}
	if !*force {
		entries, err := os.ReadDir(*dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if len(entries) > 0 {
			return fmt.Errorf("%s is not empty (use -force to write into it anyway)", *dir)
		}
	}
	start := time.Now()
	n, err := nodegen.Generate(*dir, nodegen.Config{
		Seed: *seed, TotalBytes: total, Version: *version,
		Snapshots: *snapshots, Backups: *backups, InFlight: *inflight,
		Workers: *workers, FlateLevel: *flate,
	})
	if err != nil {
		return fmt.Errorf("generate %s: %w", *dir, err)
	}
	elapsed := time.Since(start)
	var snapFiles int
	for _, s := range n.Snapshots {
		snapFiles += len(s.Files)
	}
	var user int
	for _, ks := range n.Keyspaces() {
		if ks != "system" && !strings.HasPrefix(ks, "system_") {
			user++
		}
	}
	fmt.Fprintf(stdout, "%s: version %s, %d keyspaces (%d user), %d tables, %d SSTables, %d live files, %d bytes live (%.1f MiB); %d snapshot, %d backup, %d in-flight files; %.1fs (%.0f MB/s)\n",
		n.Dir, n.Version, len(n.Keyspaces()), user, len(n.Tables), len(n.SSTables), len(n.LiveFiles), n.Bytes, float64(n.Bytes)/(1<<20),
		snapFiles, len(n.BackupFiles), len(n.InFlight), elapsed.Seconds(), float64(n.Bytes)/elapsed.Seconds()/1e6)
	return nil
}

// parseSize reads "200MB", "1GiB", "512K" or a plain byte count. K, M and
// G without B are binary, as in dd.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
		{"B", 1},
	}
	num, mult := s, int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = v, u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v*float64(mult) < 1 || v*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("bad -size %q: want a positive size such as 200MB or 1GiB", s)
	}
	return int64(v * float64(mult)), nil
}
