package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/s3/s3test"
)

// TestS3Throttled backs up and restores a small node through versitygw
// with every limit set: the throttle sits above the S3 store's retries and
// request counting, and the backup (PUTs, conditional session writes,
// LISTs) and the restore (ranged GETs) work through it and take at least
// their bytes divided by the rate.
func TestS3Throttled(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 4 MiB at 2 MB/s each way")
	}
	server := s3test.Start(t)
	cfg := server.Config(t)
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 9, TotalBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const rate = 2e6
	c := newS3CLI(t, cfg)
	c.s3 = append(c.s3, "--max-upload-rate", "2MB/s", "--max-download-rate", "2MB/s", "--max-requests-per-sec", "100")
	start := time.Now()
	stdout, stderr, log, code := c.run("backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(log, `msg="store throttled"`) || !strings.Contains(log, "max_upload_rate=2MB/s") {
		t.Errorf("log does not say the store is throttled:\n%s", log)
	}
	direct := openS3Store(t, cfg)
	if ms := checkS3Store(t, direct, "n1"); len(ms) == 0 {
		t.Fatal("no manifests after the backup")
	}
	stored, _ := storeBytes(t, direct)
	packs := prefixBytes(t, direct, "packs/")
	least := time.Duration(float64(stored) / rate * float64(time.Second))
	t.Logf("s3 backup: %d bytes stored (%d in packs) in %v at 2MB/s (at least %v); %s",
		stored, packs, took.Round(time.Millisecond), least.Round(time.Millisecond), s3RequestLine(log))
	if took < least {
		t.Errorf("backup took %v, less than the %v that %d bytes take at 2 MB/s", took, least, stored)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	c.dir = t.TempDir() // an empty cache: index files are read through the limit too
	start = time.Now()
	stdout, stderr, _, code = c.run("restore", "--data-dir", restored, "--host", "n1", "--no-chown")
	took = time.Since(start)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	sameS3Restore(t, node, data, restored)
	least = time.Duration(0.9 * float64(packs) / rate * float64(time.Second))
	t.Logf("s3 restore: %v at 2MB/s (at least %v for 90%% of %d pack bytes)", took.Round(time.Millisecond), least.Round(time.Millisecond), packs)
	if took < least {
		t.Errorf("restore took %v, less than the %v that 90%% of %d bytes take at 2 MB/s", took, least, packs)
	}
}
