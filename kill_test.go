package cassback

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

// TestMain lets the test binary act as a backup process that a test kills.
func TestMain(m *testing.M) {
	switch os.Getenv("CASSBACK_ENGINE_CHILD") {
	case "backup":
		os.Exit(childBackup())
	case "continuous":
		os.Exit(childContinuous())
	}
	os.Exit(m.Run())
}

// slowRepo opens the local store $STORE with each pack upload slowed down,
// so a parent process can kill the child midway.
func slowRepo(ctx context.Context) (*Repo, error) {
	st, err := local.Open(os.Getenv("STORE"))
	if err != nil {
		return nil, err
	}
	slow := remotetest.NewFaulty(st)
	slow.SetHook(func(op remotetest.Op, key string) error {
		if op == remotetest.OpPut && strings.HasPrefix(key, "packs/") {
			time.Sleep(40 * time.Millisecond)
		}
		return nil
	})
	return Open(ctx, slow, Options{CacheRoot: os.Getenv("CACHE"), Create: true, Log: quietLog()})
}

// childBackup backs up $DATA to $STORE as host "node1".
func childBackup() int {
	ctx := context.Background()
	r, err := slowRepo(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{os.Getenv("DATA")}, Host: "node1", Threads: 2, PackSize: 2 << 20}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childContinuous runs continuous backup of $DATA into $STORE as host
// "node1" until it is killed.
func childContinuous() int {
	ctx := context.Background()
	r, err := slowRepo(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, err = r.Continuous(ctx, nil, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{os.Getenv("DATA")}, Host: "node1", Threads: 2, PackSize: 2 << 20},
		ManifestInterval: 100 * time.Millisecond, ReportInterval: -1})
	fmt.Fprintln(os.Stderr, err)
	return 1
}

func countPacks(t *testing.T, st remote.Store) (n int, bytes int64) {
	t.Helper()
	err := st.List(t.Context(), "packs/", func(i remote.Info) error { n++; bytes += i.Size; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return n, bytes
}

// killSetup generates a node and an empty local store for a kill test.
func killSetup(t *testing.T, seed uint64, size int64) (node *nodegen.Node, st remote.Store, storeDir, cache string) {
	t.Helper()
	node, err := nodegen.Generate(filepath.Join(t.TempDir(), "data"), nodegen.Config{Seed: seed, TotalBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	storeDir = filepath.Join(t.TempDir(), "store")
	os.MkdirAll(storeDir, 0o755)
	if st, err = local.Open(storeDir); err != nil {
		t.Fatal(err)
	}
	return node, st, storeDir, filepath.Join(t.TempDir(), "cache")
}

// killMidUpload runs a child process of the given mode and kills it with
// SIGKILL once it has stored minPacks packs.
func killMidUpload(t *testing.T, mode string, st remote.Store, storeDir, data, cache string, minPacks int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CASSBACK_ENGINE_CHILD="+mode, "STORE="+storeDir, "DATA="+data, "CACHE="+cache)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if n, _ := countPacks(t, st); n >= minPacks {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("child uploaded fewer than %d packs in 60 s", minPacks)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child was not killed mid-upload (it finished: %v); make the node larger", err)
	}
}

// TestKillDuringBackup kills a backup with SIGKILL while it uploads, runs
// the same backup again, and checks that it completes, restores identical,
// and uploads again no more than the packs that were in flight.
func TestKillDuringBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process; skipped with -short")
	}
	ctx := t.Context()
	node, st, storeDir, cache := killSetup(t, 11, 48<<20)
	data := node.Dir

	killMidUpload(t, "backup", st, storeDir, data, cache, 4)
	before, beforeBytes := countPacks(t, st)
	var manifests int
	st.List(ctx, "manifests/", func(remote.Info) error { manifests++; return nil })
	if manifests != 0 {
		t.Fatalf("%d manifests exist after a killed backup, want 0", manifests)
	}

	// The same backup again, with the same cache (and so its journal).
	r, err := Open(ctx, st, Options{CacheRoot: cache, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1", Threads: 2, PackSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	after, afterBytes := countPacks(t, st)

	// A clean backup of the same data into a fresh store, for comparison.
	ref := openLocal(t, filepath.Join(t.TempDir(), "ref"), true)
	sref, err := ref.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1", Threads: 2, PackSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, refBytes := countPacks(t, ref.Store)
	dup := afterBytes - refBytes
	t.Logf("killed after %d packs (%d bytes); rerun uploaded %d packs; store holds %d pack bytes vs %d in a clean run: %d bytes uploaded twice",
		before, beforeBytes, after-before, afterBytes, refBytes, dup)
	// Chunks in packs that were durable at the kill were not uploaded again:
	// what is stored twice is at most the packs in flight (2 uploads, plus
	// one open pack per worker), each at most a pack plus one maximal chunk.
	limit := int64(4) * int64(2<<20+int(r.Config.Chunker.MaxSize))
	if dup > limit {
		t.Errorf("%d bytes stored twice after the kill, more than the packs in flight (%d)", dup, limit)
	}
	if s.BytesNew+beforeBytes < sref.BytesNew {
		t.Errorf("rerun uploaded %d new bytes on top of %d: less than the %d the data needs", s.BytesNew, beforeBytes, sref.BytesNew)
	}
	ms, err := Select(ctx, r.Store, "node1", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, data, dst, notSystem(node.LiveFiles))
}

// TestKillContinuousAndRestart: continuous backup killed with SIGKILL while
// uploading; the store stays valid, and a restart catches up without
// uploading again the files already stored.
func TestKillContinuousAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process; skipped with -short")
	}
	ctx := t.Context()
	node, st, storeDir, cache := killSetup(t, 12, 40<<20)
	data := node.Dir
	killMidUpload(t, "continuous", st, storeDir, data, cache, 5)
	_, beforeBytes := countPacks(t, st)

	// The store is valid after the kill (whatever manifests exist restore).
	r, err := Open(ctx, st, Options{CacheRoot: cache, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	if rep, err := r.Validate(ctx, ValidateOptions{Checksum: true}); err != nil || !rep.OK() {
		t.Fatalf("validate after kill -9: %v %+v", err, rep.Problems)
	}
	// Restart and wait until the manifests name every live file.
	want := notSystem(node.LiveFiles)
	stop := make(chan struct{})
	done := make(chan error, 1)
	var stats ContinuousStats
	go func() {
		var err error
		stats, err = r.Continuous(ctx, stop, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "node1", Threads: 2, PackSize: 2 << 20},
			ManifestInterval: 100 * time.Millisecond, ReportInterval: -1})
		done <- err
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ms, err := Select(ctx, st, "node1", "", nil, time.Now())
		if err == nil {
			var got []string
			for _, m := range readWhole(t, st, ms) {
				for _, tb := range m.Tables {
					for _, f := range tb.Files {
						got = append(got, f.Path)
					}
				}
			}
			slices.Sort(got)
			if slices.Equal(got, want) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted backup did not catch up in 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, afterBytes := countPacks(t, st)
	ref := openLocal(t, filepath.Join(t.TempDir(), "ref"), true)
	if _, err := ref.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1", Threads: 2, PackSize: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	_, refBytes := countPacks(t, ref.Store)
	t.Logf("killed with %d pack bytes stored; restart read %d bytes and uploaded %d; store %d vs %d for a clean backup (%d stored twice)",
		beforeBytes, stats.BytesRead, stats.BytesNew, afterBytes, refBytes, afterBytes-refBytes)
	if dup := afterBytes - refBytes; dup > int64(4)*int64(2<<20+int(r.Config.Chunker.MaxSize)) {
		t.Errorf("%d bytes stored twice, more than the packs in flight at the kill", dup)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	ms, _ := Select(ctx, st, "node1", "", nil, time.Now())
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, data, dst, want)
}
