package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// TestSIGTERMDrains: continuous backup gets SIGTERM while uploading a
// node's initial scan; it drains the queue, writes the final manifests and
// exits 0, and the latest manifests hold every complete SSTable.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process; skipped with -short")
	}
	base := t.TempDir()
	data := filepath.Join(base, "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 41, TotalBytes: 48 << 20})
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(base, "store")
	exe := copyExe(t, base)
	cmd := exec.Command(exe, "--backup-base", store, "--log-file", "-", "--log-level", "WARN", "--cache-dir", filepath.Join(base, "cache"),
		"backup", "--cassandra_data_dir", data, "--host", "n1", "--threads", "1", "--manifest-interval-secs", "0.2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal as soon as the first pack is stored: the upload is under way.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(store, "packs"))
		if len(ents) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("exited 0 %v after SIGTERM: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))
	st, err := local.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cassback.Open(context.Background(), st, cassback.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := cassback.Select(context.Background(), st, "n1", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		for i := range m.Tables {
			if err := m.EachFile(t.Context(), cassback.ChunksOf(st), i, nil, func(f *manifest.File) error {
				got = append(got, f.Path)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for _, f := range node.LiveFiles {
		if !strings.HasPrefix(f, "system/") {
			want = append(want, f)
		}
	}
	if len(got) != len(want) {
		t.Errorf("after the drain the manifests name %d files, want all %d live files", len(got), len(want))
	}
	rep, err := r.Validate(context.Background(), cassback.ValidateOptions{})
	if err != nil || !rep.OK() {
		t.Errorf("validate: %v %+v", err, rep.Problems)
	}
	var sessions int
	st.List(context.Background(), "sessions/", func(remote.Info) error { sessions++; return nil })
	if sessions != 0 {
		t.Errorf("%d sessions left after a graceful stop, want 0", sessions)
	}
}
