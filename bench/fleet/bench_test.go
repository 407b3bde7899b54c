package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/local"
)

// The large runs, switched on by the environment and skipped otherwise (so
// CI never runs them). docs/benchmarks.md ("Fleet bench") has the commands
// and the results.
//
//	CASSBACK_FLEET_DIR         the store's folder: TestFleetGenerate fills it
//	                           (it must be empty or absent), TestFleetMeasure
//	                           measures commands on it
//	CASSBACK_FLEET_HOSTS       hosts (default 10)
//	CASSBACK_FLEET_TIB         TiB a host's backup holds (default 1; 0.25 is fine)
//	CASSBACK_FLEET_SSTABLES    live SSTables per table (default 16)
//	CASSBACK_FLEET_BACKUPS     backups per host (default 3)
//	CASSBACK_FLEET_SEED        seed (default 1)
//	CASSBACK_FLEET_NODE_BYTES  size of the node TestFleetMeasure backs up (default 256 MiB)
//	CASSBACK_FLEET_MEASURE     commands to measure, comma-separated, in order:
//	                           backup (new host, empty cache), backup-warm
//	                           (another new host, the first one's cache),
//	                           list (list --hosts), validate (every host),
//	                           validate-host (--host host000), backup-10k (a node
//	                           of 10,000 small SSTables) and rebackup-10k (the
//	                           same again, unchanged, warm), purge-dry (purge
//	                           --dry-run --exclusive of about half of host000's
//	                           backups, see purgeCutoff; it lists every pack
//	                           only if the store's gc/scan record is missing
//	                           or a week old), purge-dry-scan (the same with
//	                           --scan-packs), purge (the same purge, not a
//	                           dry run: it deletes, so only on a copy of a
//	                           store) and purge-sweep (the same with --grace 0,
//	                           so it deletes what it condemns in the same run;
//	                           after purge, it deletes what that one
//	                           condemned); default: backup,
//	                           backup-warm, list, validate. validate holds every host's
//	                           references: 3 GB at 10 hosts × 1 TiB, too much
//	                           for 100 on a 24 GiB machine. A purge-dry leaves
//	                           the store as it was: the gc/ objects any purge
//	                           writes (the store's clock, the lease) are
//	                           removed afterwards when the store had none
//	CASSBACK_FLEET_PURGE_BEFORE  the purge cases' --purge-before (default: the
//	                           time of host000's backup number ⌈n/2⌉ of n, counted
//	                           from 0, so ⌈n/2⌉ backups of each keyspace, at most
//	                           all but the newest, are removed: 2 of 3)
//	CASSBACK_FLEET_KILL_RSS    resident set in bytes at which a command is killed
//	                           (default 10 GiB; the machine is shared)
//	CASSBACK_FLEET_LOGS        folder to keep each run's log in (default: dropped)
//	CASSBACK_FLEET_SRC         the source tree cassback is built from (default:
//	                           this module; a `git archive` of a commit pins it)
//	CASSBACK_FLEET_OUT         file each result is appended to, a JSON object a line

func envInt(t *testing.T, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

// record appends v as a JSON line to CASSBACK_FLEET_OUT, if set.
func record(t *testing.T, v any) {
	path := os.Getenv("CASSBACK_FLEET_OUT")
	if path == "" {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss << 10
}

// TestFleetGenerate generates the store CASSBACK_FLEET_DIR names.
func TestFleetGenerate(t *testing.T) {
	dir := os.Getenv("CASSBACK_FLEET_DIR")
	if dir == "" {
		t.Skip("set CASSBACK_FLEET_DIR (and CASSBACK_FLEET_HOSTS, CASSBACK_FLEET_TIB) to generate a fleet store")
	}
	tib := 1.0
	if s := os.Getenv("CASSBACK_FLEET_TIB"); s != "" {
		var err error
		if tib, err = strconv.ParseFloat(s, 64); err != nil {
			t.Fatalf("CASSBACK_FLEET_TIB=%q: %v", s, err)
		}
	}
	c := Config{
		Hosts:            int(envInt(t, "CASSBACK_FLEET_HOSTS", 10)),
		BytesPerHost:     int64(tib * (1 << 40)),
		SSTablesPerTable: int(envInt(t, "CASSBACK_FLEET_SSTABLES", 0)),
		BackupsPerHost:   int(envInt(t, "CASSBACK_FLEET_BACKUPS", 0)),
		Seed:             uint64(envInt(t, "CASSBACK_FLEET_SEED", 1)),
	}
	s, err := Generate(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	rss := selfMaxRSS()
	disk, files, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hosts × %.3g TiB: %d chunks (%s), %d shared; %d packs (%s logical, %s of stubs); "+
		"%d index files (%s); %d manifests (%s), %d refs; %d files, %s on disk; %v, peak RSS %s",
		s.Hosts, tib, s.Chunks, MB(s.ChunkBytes), s.SharedChunks, s.Packs, MB(s.PackBytes), MB(s.StubBytes),
		s.IndexFiles, MB(s.IndexBytes), s.Manifests, MB(s.ManifestBytes), s.Refs, files, MB(disk),
		s.Elapsed.Round(time.Second), MB(rss))
	record(t, map[string]any{"kind": "generate", "dir": dir, "tib": tib, "config": c, "stats": s,
		"disk_bytes": disk, "files": files, "max_rss": rss, "date": time.Now().UTC().Format(time.RFC3339)})
}

// TestFleetMeasure runs the commands CASSBACK_FLEET_MEASURE names against
// the store in CASSBACK_FLEET_DIR, each with the real binary, and logs a
// table row for each. New hosts it backs up are removed afterwards.
func TestFleetMeasure(t *testing.T) {
	dir := os.Getenv("CASSBACK_FLEET_DIR")
	if dir == "" {
		t.Skip("set CASSBACK_FLEET_DIR to a generated fleet store to measure commands on it")
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		t.Fatalf("no fleet store in %s: %v", dir, err)
	}
	ctx := t.Context()
	bin, err := Build(ctx, os.Getenv("CASSBACK_FLEET_SRC"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	e := Env{Bin: bin, MetaDir: dir, CacheDir: filepath.Join(work, "cache"), Scratch: work,
		KillRSS: envInt(t, "CASSBACK_FLEET_KILL_RSS", 10<<30), KeepSurvey: os.Getenv("CASSBACK_FLEET_LOGS") != ""}

	// The new hosts are removed before (what an interrupted run left)
	// and after.
	newHosts := []string{"new1", "new2", "new3"}
	removeNew := func() {
		for _, h := range newHosts {
			if n, err := RemoveHost(context.Background(), dir, h); err != nil {
				t.Errorf("remove %s: %v", h, err)
			} else if n > 0 {
				t.Logf("removed %s: %d objects", h, n)
			}
		}
	}
	removeNew()
	t.Cleanup(removeNew)
	hosts, err := os.ReadDir(filepath.Join(dir, "index"))
	if err != nil {
		t.Fatal(err)
	}

	// Each backup is of a node of its own (seeds 1 and 2), so the warm one
	// uploads as much as the cold one.
	nodeBytes := envInt(t, "CASSBACK_FLEET_NODE_BYTES", 256<<20)
	backup := func(host string, seed uint64) []string {
		node := filepath.Join(work, "node-"+host)
		began := time.Now()
		if _, err := nodegen.Generate(node, nodegen.Config{Seed: seed, TotalBytes: nodeBytes}); err != nil {
			t.Fatal(err)
		}
		t.Logf("node of %s generated in %v", MB(nodeBytes), time.Since(began).Round(time.Millisecond))
		return []string{"backup", "--ignore-changes", "--cassandra-data-dir", node, "--host", host}
	}

	// The purge cases remove host000's backups before one cut-off. Any
	// purge writes gc/clock and gc/lease; after dry runs alone, a store
	// that had no gc/ is given back without one.
	purgeBefore := os.Getenv("CASSBACK_FLEET_PURGE_BEFORE")
	_, err = os.Stat(filepath.Join(dir, "gc"))
	hadGC, purged := err == nil, false
	t.Cleanup(func() {
		if !hadGC && !purged {
			if err := os.RemoveAll(filepath.Join(dir, "gc")); err != nil {
				t.Errorf("remove the purge's gc/: %v", err)
			}
		}
	})
	purge := func(extra ...string) []string {
		if purgeBefore == "" {
			cut, n, err := purgeCutoff(ctx, dir, "host000")
			if err != nil {
				t.Fatal(err)
			}
			purgeBefore = cut.Format(time.RFC3339Nano)
			t.Logf("host000 has %d backups of each keyspace; purging those before %s", n, purgeBefore)
		}
		// --exclusive: no other process uses the store while a command
		// is measured (and stores generated before the generator probed
		// conditional writes say they have none).
		// --new-pack-margin 0: the generator writes every pack at once,
		// so all are young for an hour after it (and a store measured
		// within that hour would condemn nothing).
		return append([]string{"purge", "--exclusive", "--host", "host000", "--purge-before", purgeBefore, "--new-pack-margin", "0"}, extra...)
	}

	cmds := strings.Split(os.Getenv("CASSBACK_FLEET_MEASURE"), ",")
	if cmds[0] == "" {
		cmds = []string{"backup", "backup-warm", "list", "validate"}
	}
	t.Logf("| hosts | command | peak RSS | wall | CPU | exit | requests |")
	for _, name := range cmds {
		var args []string
		switch name {
		case "backup":
			args = backup(newHosts[0], 1)
		case "backup-warm":
			args = backup(newHosts[1], 2)
		case "backup-10k", "rebackup-10k":
			// A node of 10,000 small SSTables: backed up, then again
			// unchanged with the same cache (the second is what the
			// issue's "unchanged re-backup" row measures).
			node := filepath.Join(work, "node-10k")
			if _, err := os.Stat(node); err != nil {
				buildTree(t, node, 10, 100, 10)
			}
			args = []string{"backup", "--ignore-changes", "--cassandra-data-dir", node, "--host", newHosts[2]}
		case "list":
			args = []string{"list", "--hosts"}
		case "validate":
			args = []string{"validate"}
		case "validate-host":
			args = []string{"validate", "--host", "host000"}
		case "purge-dry":
			args = purge("--dry-run")
		case "purge-dry-scan":
			args = purge("--dry-run", "--scan-packs")
		case "purge":
			args, purged = purge(), true
		case "purge-sweep":
			args, purged = purge("--grace", "0"), true
		default:
			t.Fatalf("CASSBACK_FLEET_MEASURE: unknown command %q", name)
		}
		r, err := Measure(ctx, e, args...)
		if err != nil {
			t.Fatal(err)
		}
		rss := MB(r.MaxRSS)
		if r.Killed {
			rss = "killed at " + rss
		}
		t.Logf("| %d | %s | %s | %v | %v | %d | %s |", len(hosts), name, rss, r.Wall.Round(10*time.Millisecond),
			r.CPU.Round(10*time.Millisecond), r.Exit, r.Requests())
		if logs := os.Getenv("CASSBACK_FLEET_LOGS"); logs != "" {
			if b, err := os.ReadFile(r.Log); err == nil {
				os.WriteFile(filepath.Join(logs, fmt.Sprintf("%d-hosts-%s.log", len(hosts), name)), b, 0o644)
			}
			if b, err := os.ReadFile(r.Survey); err == nil {
				os.WriteFile(filepath.Join(logs, fmt.Sprintf("%d-hosts-%s.survey", len(hosts), name)), b, 0o644)
				os.Remove(r.Survey)
			}
		}
		if r.Exit != 0 && !r.Killed {
			log, _ := os.ReadFile(r.Log)
			t.Errorf("%s: exit %d\n%s%s\nlog tail: %s", name, r.Exit, r.Stdout, r.Stderr, tail(log, 2000))
		}
		record(t, map[string]any{"kind": "measure", "dir": dir, "hosts": len(hosts), "command": name,
			"args": args, "node_bytes": nodeBytes, "exit": r.Exit, "killed": r.Killed, "wall_s": r.Wall.Seconds(),
			"cpu_s": r.CPU.Seconds(), "max_rss": r.MaxRSS, "ops": r.Ops, "requests": r.Requests(), "stdout": tail([]byte(r.Stdout), 2000),
			"date": time.Now().UTC().Format(time.RFC3339)})
	}
}

// purgeCutoff returns the time of backup number ⌈n/2⌉ (from 0) of the n
// backup times of host's keyspaces in the store in dir, at most the
// newest: a purge of the backups before it removes about half of them
// (purge always keeps a keyspace's newest). It returns n too.
func purgeCutoff(ctx context.Context, dir, host string) (time.Time, int, error) {
	st, err := local.Open(dir)
	if err != nil {
		return time.Time{}, 0, err
	}
	kss, err := manifest.Keyspaces(ctx, st, host)
	if err != nil {
		return time.Time{}, 0, err
	}
	var times []time.Time
	for _, ks := range kss {
		if err := manifest.List(ctx, st, host, ks, "", func(name string) error {
			t, _, _, err := manifest.ParseBackupName(name)
			if err == nil && !slices.ContainsFunc(times, t.Equal) {
				times = append(times, t)
			}
			return err
		}); err != nil {
			return time.Time{}, 0, err
		}
	}
	if len(times) == 0 {
		return time.Time{}, 0, fmt.Errorf("no backups of %s in %s", host, dir)
	}
	slices.SortFunc(times, time.Time.Compare)
	return times[min((len(times)+1)/2, len(times)-1)], len(times), nil
}

// buildTree writes a data folder of keyspaces × tables × ssts SSTables of
// 8 small components each (a TOC listing them): what a node with many
// SSTables costs a backup in metadata.
func buildTree(t *testing.T, root string, keyspaces, tables, ssts int) {
	t.Helper()
	comps := []string{"Data.db", "Index.db", "Filter.db", "Statistics.db", "Summary.db", "Digest.crc32", "CompressionInfo.db"}
	toc := []byte(strings.Join(append(slices.Clone(comps), "TOC.txt"), "\n") + "\n")
	for k := range keyspaces {
		for tb := range tables {
			dir := filepath.Join(root, fmt.Sprintf("ks%02d", k), fmt.Sprintf("t%03d-%032x", tb, k*1000+tb))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for g := 1; g <= ssts; g++ {
				for _, c := range comps {
					body := fmt.Appendf(nil, "%s %d %d %d", c, k, tb, g)
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("nb-%d-big-%s", g, c)), body, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("nb-%d-big-TOC.txt", g)), toc, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
