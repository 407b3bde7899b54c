package cassback

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/local"
)

// The torture test's protocol timings, as command-line flags: fast
// heartbeats, a short lease; purges with no grace and no new-pack margin.
const (
	tortureHeartbeat = 100 * time.Millisecond
	tortureLease     = 2 * time.Second
)

// buildCLI builds the cassback command into dir.
func buildCLI(t *testing.T, dir string) string {
	t.Helper()
	exe := filepath.Join(dir, "cassback")
	out, err := exec.Command("go", "build", "-o", exe, "./cmd/cassback").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/cassback: %v\n%s", err, out)
	}
	return exe
}

// history records every content each path of a simulated node ever had.
type history struct {
	mu   sync.Mutex
	seen map[string]map[[32]byte]bool
}

func (h *history) record(t *testing.T, n *nodegen.Node) {
	for _, f := range n.LiveFiles {
		b, err := os.ReadFile(filepath.Join(n.Dir, filepath.FromSlash(f)))
		if err != nil {
			t.Errorf("simulator: %v", err)
			return
		}
		h.mu.Lock()
		if h.seen[f] == nil {
			h.seen[f] = map[[32]byte]bool{}
		}
		h.seen[f][sha256.Sum256(b)] = true
		h.mu.Unlock()
	}
}

// TestTorture: three nodes back up continuously (the cassback command,
// one process each) from simulated nodes that flush and compact, while
// purges with zero grace run in a loop, and processes are killed with
// SIGKILL, or stopped with SIGSTOP for longer than the session lease, at
// random. Afterwards `validate --checksum` passes, every remaining backup
// restores to files the simulator really had, and `restore` of each host's
// latest backup equals the node's final live state. CASSBACK_TORTURE_SECS
// sets the duration (default 15 s; run it long by hand:
// CASSBACK_TORTURE_SECS=300 go test -run Torture .).
func TestTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes for a while; skipped with -short")
	}
	dur := 15 * time.Second
	if s := os.Getenv("CASSBACK_TORTURE_SECS"); s != "" {
		n, _ := strconv.Atoi(s)
		dur = time.Duration(n) * time.Second
	}
	ctx := t.Context()
	base := t.TempDir()
	exe := buildCLI(t, base)
	storeDir := filepath.Join(base, "store")
	gcRepo(t, storeDir, true) // creates the store
	hosts := []string{"h0", "h1", "h2"}
	nodes := make([]*nodegen.Node, 3)
	hist := make([]*history, 3)
	for i := range nodes {
		var err error
		nodes[i], err = nodegen.Generate(filepath.Join(base, "data"+strconv.Itoa(i)), nodegen.Config{Seed: uint64(100 + i%2), TotalBytes: 3 << 20,
			Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "a", Weight: 2}, {Name: "b", Weight: 1}}}}})
		if err != nil {
			t.Fatal(err)
		}
		hist[i] = &history{seen: map[string]map[[32]byte]bool{}}
		hist[i].record(t, nodes[i])
	}
	var renewals stderrCounter // backups that found their session revoked and began anew
	cli := func(cache string, args ...string) *exec.Cmd {
		global := []string{"--backup-base", storeDir, "--cache-dir", filepath.Join(base, cache), "--log-file", "-", "--log-level", "WARN",
			"--session-heartbeat", tortureHeartbeat.String(), "--session-lease", tortureLease.String()}
		cmd := exec.Command(exe, append(global, args...)...)
		cmd.Stdout, cmd.Stderr = &renewals, &renewals
		return cmd
	}
	start := func(mode string, i int) *child {
		var cmd *exec.Cmd
		if mode == "backup" {
			cmd = cli("cache"+strconv.Itoa(i), "backup", "--cassandra_data_dir", nodes[i].Dir, "--host", hosts[i],
				"--threads", "2", "--manifest-interval-secs", "0.1", "--report-interval-secs", "0")
		} else {
			before := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
			args := []string{"purge", "--host", hosts[i%3], "--purge-before", before, "--grace", "0", "--new-pack-margin", "0"}
			if i%2 == 1 {
				args = append(args, "--purge-memory-mb", "1") // shards spilled to disk, killed midway too
			}
			cmd = cli("cache-purge", args...)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: cmd, done: make(chan struct{})}
		go func() { c.err = cmd.Wait(); close(c.done) }()
		return c
	}
	procs := make([]*child, 3)
	for i := range procs {
		procs[i] = start("backup", i)
	}
	var wg sync.WaitGroup
	stopSim := make(chan struct{})
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			churn(t, n, hist[i], uint64(i), stopSim)
		}()
	}
	// Purges in a loop; SIGKILLs, and SIGSTOPs longer than the lease, at
	// random. A stopped purge's successor takes its lease over; a stopped
	// backup finds its session revoked and starts a new one.
	deadline := time.Now().Add(dur)
	rng := rand.New(rand.NewPCG(1, 2))
	var f tortureFigures
	var purges []*child
	var paused sync.WaitGroup
	pause := func(c *child) {
		if !c.stopped.CompareAndSwap(false, true) {
			return
		}
		c.cmd.Process.Signal(syscall.SIGSTOP)
		f.stops++
		d := tortureLease + time.Duration(500+rng.IntN(1500))*time.Millisecond
		paused.Add(1)
		go func() {
			defer paused.Done()
			time.Sleep(d)
			c.cmd.Process.Signal(syscall.SIGCONT)
			c.stopped.Store(false)
		}()
	}
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		for i, p := range procs {
			if p.exited() {
				procs[i] = start("backup", i) // ended after a revocation, or failed
				f.restarts++
			}
		}
		purges = slices.DeleteFunc(purges, (*child).exited)
		if !slices.ContainsFunc(purges, func(c *child) bool { return !c.stopped.Load() }) {
			purges = append(purges, start("purge", f.purges))
			f.purges++
		}
		switch k := rng.IntN(12); {
		case k < 4:
			i := rng.IntN(3)
			procs[i].cmd.Process.Signal(syscall.SIGKILL)
			<-procs[i].done
			procs[i] = start("backup", i)
			f.kills++
		case k < 5:
			pause(procs[rng.IntN(3)])
		case k < 7:
			p := purges[rng.IntN(len(purges))]
			p.cmd.Process.Signal(syscall.SIGKILL)
			f.kills++
		case k < 8:
			pause(purges[rng.IntN(len(purges))])
		}
	}
	close(stopSim)
	wg.Wait()
	paused.Wait()
	for _, p := range purges {
		<-p.done
	}
	// Let the backups catch up with the final state, then stop them cleanly.
	for i, p := range procs {
		if p.exited() {
			procs[i] = start("backup", i)
			f.restarts++
		}
	}
	time.Sleep(3 * time.Second)
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		if p.err != nil {
			t.Errorf("backup did not stop cleanly: %v", p.err)
		}
	}
	// One last purge of each host, then validate --checksum, all with the
	// command line.
	run := func(args ...string) {
		t.Helper()
		cmd := cli("cache-final", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("cassback %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
	for _, h := range hosts {
		run("purge", "--host", h, "--purge-before", time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano), "--grace", "0", "--new-pack-margin", "0")
	}
	run("validate", "--checksum")
	st, _ := local.Open(storeDir)
	r, err := Open(ctx, st, Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	// Every remaining manifest restores to contents the node really had.
	restored := 0
	for i, h := range hosts {
		var names []string
		manifest.List(ctx, st, h, "ks", "", func(n string) error { names = append(names, n); return nil })
		for _, n := range names {
			m, err := manifest.Get(ctx, st, n, ChunksOf(st))
			if err != nil {
				t.Fatal(err)
			}
			checkComplete(t, m)
			dst := filepath.Join(t.TempDir(), "r")
			if _, err := r.Restore(ctx, []*manifest.Manifest{m}, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
				t.Fatalf("restore %s: %v", n, err)
			}
			for p, sum := range treeHashes(t, dst) {
				if !hist[i].seen[p][sum] {
					t.Errorf("restore of %s: %s has content the node never had", n, p)
				}
			}
			restored++
		}
		// `restore` of the latest backup is the final state.
		dst := filepath.Join(t.TempDir(), "final")
		run("restore", "--host", h, "--data-dir", dst, "--no-chown")
		want := snapshotLive(t, nodes[i], []string{"ks"})
		if got := treeHashes(t, dst); !maps.Equal(got, want) {
			t.Errorf("host %s: latest backup has %d files, the node %d (%s)", h, len(got), len(want), firstDiff(got, want))
		}
	}
	var live int64
	for _, n := range nodes {
		for _, f := range n.LiveFiles {
			if fi, err := os.Stat(filepath.Join(n.Dir, filepath.FromSlash(f))); err == nil {
				live += fi.Size()
			}
		}
	}
	t.Logf("torture %v: %d kills, %d stops past the lease, %d backup sessions revoked and begun anew, %d backup restarts, %d purges; %d manifests remain and restore; store %d bytes for %d bytes of live data on the 3 nodes",
		dur, f.kills, f.stops, renewals.n.Load(), f.restarts, f.purges, restored, storeBytes(t, st), live)
}

// tortureFigures counts what the torture test did.
type tortureFigures struct{ kills, stops, restarts, purges int }

// stderrCounter takes the children's output: it counts the continuous
// backups that began a new session after a revocation, and passes on
// errors only.
type stderrCounter struct{ n atomic.Int64 }

func (c *stderrCounter) Write(b []byte) (int, error) {
	c.n.Add(int64(bytes.Count(b, []byte("starting again with a new session"))))
	if bytes.Contains(b, []byte("level=ERROR")) {
		os.Stderr.Write(b)
	}
	return len(b), nil
}

// child is a process of the torture test.
type child struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once it exited
	err     error         // its exit, once done
	stopped atomic.Bool   // SIGSTOPped now
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// churn flushes, compacts and rewrites SSTables of n at random until stop
// is closed, recording every content each file had.
func churn(t *testing.T, n *nodegen.Node, h *history, seed uint64, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(50+rng.IntN(200)) * time.Millisecond):
		}
		table := []string{"a", "b"}[rng.IntN(2)]
		var err error
		switch k := rng.IntN(10); {
		case k < 6:
			_, err = n.Flush("ks", table, int64(32<<10+rng.IntN(256<<10)))
		case k < 8:
			var gens []string
			for _, s := range n.Keyspace("ks") {
				if s.Table == table && s.Index == "" {
					gens = append(gens, s.Gen)
				}
			}
			if len(gens) >= 2 {
				_, err = n.Compact("ks", table, gens)
			}
		default:
			if ss := n.Keyspace("ks"); len(ss) > 0 {
				s := ss[rng.IntN(len(ss))]
				err = n.RewriteStatistics("ks", s.Table, s.Gen)
			}
		}
		if err != nil {
			t.Errorf("simulator: %v", err)
			return
		}
		h.record(t, n)
	}
}
