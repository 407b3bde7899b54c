package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// TestRateFlags checks that a throttling option it cannot read, or out of
// range, is a one-line usage error naming the option, from the command
// line, an argument file or the environment, before any store is opened.
func TestRateFlags(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	const want = "want a number and a unit per second, such as 50MB/s, 400Mbit/s or 1GiB/s (0 for no limit)"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-upload-rate", "fast"}, `--max-upload-rate "fast": ` + want},
		{[]string{"--max-upload-rate", "50XB/s"}, `--max-upload-rate "50XB/s": unknown unit "XB/s": ` + want},
		{[]string{"--max-upload-rate=5mb/s"}, `--max-upload-rate "5mb/s": unknown unit "mb/s": ` + want},
		{[]string{"--max-upload-rate", "-5MB/s"}, `--max-upload-rate "-5MB/s": ` + want},
		{[]string{"--max-upload-rate", "999B/s"}, "--max-upload-rate 999B/s: want 0 (no limit) or 1kB/s to 1TB/s"},
		{[]string{"--max-upload-rate", "2TB/s"}, "--max-upload-rate 2TB/s: want 0 (no limit) or 1kB/s to 1TB/s"},
		{[]string{"--max-download-rate", "1e9"}, `--max-download-rate "1e9": unknown unit "e9": ` + want},
		{[]string{"--max-download-rate", "9Tbit/s"}, "--max-download-rate 9Tbit/s: want 0 (no limit) or 1kB/s to 1TB/s"},
		{[]string{"--max-requests-per-sec", "-1"}, "--max-requests-per-sec -1: want 0 to 100000"},
		{[]string{"--max-requests-per-sec", "NaN"}, "--max-requests-per-sec NaN: want 0 to 100000"},
		{[]string{"--max-requests-per-sec", "1e6"}, "--max-requests-per-sec 1000000: want 0 to 100000"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"--backup-base", missing}, tt.args...)
			_, stderr, code := cli(t, filepath.Join(dir, "cache"), append(args, "list")...)
			if code != 2 || stderr != "cassback: "+tt.want+"\n" {
				t.Errorf("got exit status %d, stderr %q; want 2 and %q", code, stderr, "cassback: "+tt.want)
			}
		})
	}
	conf := writeArgFile(t, dir, "rate.conf", "--max-upload-rate=50 XB/s")
	_, stderr, code := cli(t, filepath.Join(dir, "cache"), "--backup-base", missing, "@"+conf, "list")
	if want := "cassback: --max-upload-rate \"50 XB/s\": unknown unit \"XB/s\": " + want + "\n"; code != 2 || stderr != want {
		t.Errorf("argument file: got exit status %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	t.Setenv("CASSBACK_MAX_DOWNLOAD_RATE", "lots")
	_, stderr, code = cli(t, filepath.Join(dir, "cache"), "--backup-base", missing, "list")
	if want := "cassback: --max-download-rate \"lots\": " + want + "\n"; code != 2 || stderr != want {
		t.Errorf("environment: got exit status %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a command with a bad option created the store's folder")
	}
}

// TestRateFlagsAccepted checks that good values are taken, including the
// forms of Medusa's transfer_max_bandwidth, and that 0 and "" mean none.
func TestRateFlagsAccepted(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"", "0", "50MB/s", "50MiB/s", "400Mbit/s", "400Mbps", "1GiB/s", "1.5 GB/s", "1kB/s", "1TB/s", "8Tbit/s"} {
		_, stderr, code := cli(t, filepath.Join(dir, "cache"), "--backup-base", dir,
			"--max-upload-rate", v, "--max-download-rate", v, "--max-requests-per-sec", "2.5", "list")
		// An empty folder is not a store: exit 1, after the options passed.
		if code != 1 || !strings.Contains(stderr, "is not a cassback store") {
			t.Errorf("%q: got exit status %d, stderr %q; want 1 and 'not a cassback store'", v, code, stderr)
		}
	}
}

// TestThrottledBackupAndRestore backs up a small generated node with
// --max-upload-rate and restores it with --max-download-rate, through the
// real command, and checks that each took at least the bytes it moved
// divided by the rate (the buckets start empty, so no burst shortens
// that), and, without the race detector, not much longer.
func TestThrottledBackupAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 6 MiB at 2 MB/s each way")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 7, TotalBytes: 6 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const rate = 2e6
	store := filepath.Join(dir, "store")
	cache := filepath.Join(dir, "cache")
	start := time.Now()
	out, stderr, code := cli(t, cache, "--backup-base", store, "--max-upload-rate", "2MB/s",
		"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("backup: exit status %d\n%s%s", code, out, stderr)
	}
	st, err := local.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := storeBytes(t, st)
	packs := prefixBytes(t, st, "packs/")
	least := time.Duration(float64(stored) / rate * float64(time.Second))
	t.Logf("backup of %d bytes of SSTables: stored %d bytes (%d in packs) in %v at --max-upload-rate 2MB/s (%.3g B/s; at least %v)",
		node.Bytes, stored, packs, took.Round(time.Millisecond), float64(stored)/took.Seconds(), least.Round(time.Millisecond))
	if took < least {
		t.Errorf("backup took %v, less than the %v that %d bytes take at 2 MB/s", took, least, stored)
	}
	if took > 2*least+10*time.Second && !raceEnabled() { // under -race chunking alone is that slow
		t.Errorf("backup took %v, far more than the %v that %d bytes take at 2 MB/s", took, least, stored)
	}

	// Restore with a fresh cache: every index file and every chunk of
	// the packs is read through the limit.
	start = time.Now()
	out, stderr, code = cli(t, filepath.Join(dir, "cache2"), "--backup-base", store, "--max-download-rate", "16Mbit/s",
		"restore", "--data-dir", filepath.Join(dir, "restored"), "--host", "n1", "--no-chown")
	took = time.Since(start)
	if code != 0 {
		t.Fatalf("restore: exit status %d\n%s%s", code, out, stderr)
	}
	least = time.Duration(0.9 * float64(packs) / rate * float64(time.Second))
	t.Logf("restore: read at least 90%% of %d pack bytes in %v at --max-download-rate 16Mbit/s (at least %v)",
		packs, took.Round(time.Millisecond), least.Round(time.Millisecond))
	if took < least {
		t.Errorf("restore took %v, less than the %v that 90%% of %d bytes take at 2 MB/s", took, least, packs)
	}
	if took > 2*least+10*time.Second && !raceEnabled() { // under -race chunking alone is that slow
		t.Errorf("restore took %v, far more than the %v that %d bytes take at 2 MB/s", took, least, packs)
	}
}

// prefixBytes sums the sizes of the objects of st under prefix.
func prefixBytes(t *testing.T, st remote.Store, prefix string) int64 {
	t.Helper()
	var n int64
	if err := st.List(context.Background(), prefix, func(i remote.Info) error { n += i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
