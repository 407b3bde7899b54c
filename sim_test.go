package cassback

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/internal/random"
	"github.com/cassback/cassback/internal/sim"
	"github.com/cassback/cassback/manifest"
)

// The protocol simulator. Real backups (one-shot and continuous), purges,
// restores and validations of a few small nodes run as actors of one
// simulated store (internal/sim), interleaved request by request by a
// seeded scheduler, with crashes, pauses longer than the lease, lost,
// failed and delayed requests, clock skew, stores whose conditional writes
// are missing, and damaged index files. After every step the invariant of
// docs/design.md §4 is checked:
//
//   - every committed backup's manifest is stored and every chunk it names
//     is in a stored pack (named by an index file, or found by its header);
//   - no chunk that a live session's backup references is deleted.
//
// A failing seed prints its schedule; rerun it alone with -sim.seed.

var (
	simSchedules = flag.Int("sim.schedules", 0, "schedules TestSimulator runs (default 200, 20 with -short; CASSBACK_SIM_SCHEDULES overrides)")
	simSeed      = flag.Uint64("sim.seed", 0, "run TestSimulator with this seed only")
	simFirst     = flag.Uint64("sim.first", 1, "first seed of TestSimulator")
	simHoles     = flag.String("sim.holes", "", "TestSimulatorFindsHoles: only these holes (digits, e.g. 147)")
)

// simulator timings, in virtual time.
const (
	simHeartbeat = time.Minute
	simLease     = 5 * time.Minute
)

func schedules(t *testing.T) int {
	if s := os.Getenv("CASSBACK_SIM_SCHEDULES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("CASSBACK_SIM_SCHEDULES=%q: %v", s, err)
		}
		return n
	}
	switch {
	case *simSchedules > 0:
		return *simSchedules
	case testing.Short(), raceOn:
		return 20
	}
	return 200
}

// TestSimulatorFoundSeeds replays the schedules the long mode failed on,
// each a bug fixed since.
func TestSimulatorFoundSeeds(t *testing.T) {
	for _, seed := range []uint64{
		1092207, // a sweep kept a chunk's only copy in an orphan pack and deleted every index file: unindexed
		33859,   // the oracle counted an SSTable compacted away before any manifest named it as still referenced
		83863,   // a restore whose session was revoked while it started read on without one
		15081,   // a pack indexed from its header lost its copy to a stale index file's, in a swept pack
		677075,  // a pack known from a good bucket of a damaged index file was not read from its header: a chunk of a damaged bucket not found
	} {
		if err := runSchedule(t, seed, simConfig{}); err != nil {
			t.Error(err)
		}
	}
}

// TestSimulator runs many seeded schedules and fails on the first that
// breaks the invariant, printing its seed and its trace.
func TestSimulator(t *testing.T) {
	if *simSeed != 0 {
		var trace string
		err := runSchedule(t, *simSeed, simConfig{trace: &trace, hideSizes: hidesSizes(*simSeed)})
		if d := os.Getenv("CASSBACK_SIM_DUMP"); d != "" {
			os.WriteFile(filepath.Join(d, fmt.Sprintf("seed%d.trace", *simSeed)), []byte(trace), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	n := schedules(t)
	start := time.Now()
	steps := 0
	for i := range n {
		seed := *simFirst + uint64(i)
		if err := runSchedule(t, seed, simConfig{stepsOut: &steps, hideSizes: hidesSizes(seed)}); err != nil {
			t.Fatalf("schedule %d of %d: %v", i+1, n, err)
		}
		if (i+1)%20000 == 0 && i+1 < n {
			t.Logf("%d schedules (seeds %d-%d), %d steps, no violation, %v", i+1, *simFirst, seed, steps, time.Since(start).Round(time.Second))
		}
	}
	t.Logf("%d schedules, %d steps, no violation, in %v", n, steps, time.Since(start).Round(time.Millisecond))
}

// TestSimulatorReplaysInAnotherProcess runs one seed in two processes of
// this test binary and compares their whole traces, byte for byte: a seed
// the long mode reports must replay with -sim.seed (seed 46826 did not
// while the schedule's folder named the process).
func TestSimulatorReplaysInAnotherProcess(t *testing.T) {
	if *simSeed != 0 {
		t.Skip("a child of this test")
	}
	var traces [2][]byte
	for i := range traces {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSimulator$", "-sim.seed=46826", "-test.timeout=10m")
		cmd.Env = append(os.Environ(), "CASSBACK_SIM_DUMP="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("seed 46826 in a child process: %v\n%s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "seed46826.trace"))
		if err != nil {
			t.Fatal(err)
		}
		traces[i] = b
	}
	if !bytes.Equal(traces[0], traces[1]) {
		a, b := strings.Split(string(traces[0]), "\n"), strings.Split(string(traces[1]), "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("the traces of one seed in two processes differ first at line %d:\n%s\n%s", i+1, a[i], b[i])
			}
		}
		t.Fatalf("the traces of one seed in two processes differ in length: %d and %d lines", len(a), len(b))
	}
}

// TestSimulatorReproducible runs seeds twice: a schedule is a function of
// its seed, so a failing seed can be replayed.
func TestSimulatorReproducible(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		var a, b string
		errA := runSchedule(t, seed, simConfig{trace: &a, hideSizes: hidesSizes(seed)})
		errB := runSchedule(t, seed, simConfig{trace: &b, hideSizes: hidesSizes(seed)})
		rawA, rawB := a, b
		// Sizes of manifests vary with the inode numbers they record.
		a, b = sizes.ReplaceAllString(a, "_B"), sizes.ReplaceAllString(b, "_B")
		a, b = tmpdirs.ReplaceAllString(a, "TMP/"), tmpdirs.ReplaceAllString(b, "TMP/")
		// The IDs of packs holding manifest trees, of the index files
		// naming them, and the ranges read from them vary with the inodes
		// and folders the trees record: each ID is named by when it first
		// appears, and ranges are left out.
		a, b = ordinalIDs(a), ordinalIDs(b)
		a, b = packDirs.ReplaceAllString(a, "packs/"), packDirs.ReplaceAllString(b, "packs/")
		a, b = ranges.ReplaceAllString(a, "[_]"), ranges.ReplaceAllString(b, "[_]")
		if a != b || (errA == nil) != (errB == nil) {
			if d := os.Getenv("CASSBACK_SIM_DUMP"); d != "" {
				os.WriteFile(filepath.Join(d, "a.trace"), []byte(a), 0o644)
				os.WriteFile(filepath.Join(d, "b.trace"), []byte(b), 0o644)
				os.WriteFile(filepath.Join(d, "a.raw"), []byte(rawA), 0o644)
				os.WriteFile(filepath.Join(d, "b.raw"), []byte(rawB), 0o644)
			}
			t.Fatalf("seed %d ran two ways:\n%s\n---\n%s", seed, firstDiffLine(a, b), errors.Join(errA, errB))
		}
	}
}

// ordinalIDs replaces each 64-hex-digit ID in a trace by its ordinal of
// first appearance.
func ordinalIDs(s string) string {
	seen := map[string]string{}
	return hexIDs.ReplaceAllStringFunc(s, func(id string) string {
		if o, ok := seen[id]; ok {
			return o
		}
		o := fmt.Sprintf("id%d", len(seen))
		seen[id] = o
		return o
	})
}

var (
	hexIDs   = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	packDirs = regexp.MustCompile(`packs/[0-9a-f]{2}/`)
	ranges   = regexp.MustCompile(`\[\d+,\d+\]`)
	sizes    = regexp.MustCompile(`\b\d+B\b`)
	tmpdirs  = regexp.MustCompile(`/\S*?/cassback-sim-\d+/`) // each schedule's own temporary folder
)

func firstDiffLine(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return la[i] + "\n" + lb[i]
		}
	}
	return "(one trace is a prefix of the other)"
}

// TestSimulatorFindsHoles puts each hole of docs/design.md §4.7 back in turn
// and runs schedules until the invariant breaks: a simulator that cannot
// fail would prove nothing.
func TestSimulatorFindsHoles(t *testing.T) {
	if (raceOn || testing.Short()) && os.Getenv("CASSBACK_SIM_HOLE_LIMIT") == "" {
		t.Skip("a long run: test.sh runs it without -race (CASSBACK_SIM_HOLE_LIMIT=N runs it here)")
	}
	limit := 2000
	if s := os.Getenv("CASSBACK_SIM_HOLE_LIMIT"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	for _, h := range hole.All() {
		if h == hole.NewestByKey {
			continue // an attacker's planted object, not a schedule: TestHole8NewestByKey
		}
		if h == hole.StaleGeneration {
			// Since a backup also checks its cached manifests against their
			// commit's markers, hole 9 needs a marker written late, after a
			// purge removed its backup and swept its packs: not found in
			// 2,000 schedules, nor in 1,500 with a fifth of writes delayed
			// up to 400 steps. TestHole9StaleGeneration puts such markers
			// back every run. (Before the marker check the simulator found
			// it within 8 schedules.)
			t.Logf("hole %s: TestHole9StaleGeneration", h)
			continue
		}
		if h == hole.UnconfirmedKeepers {
			// Needs a pack lost outside the protocol, which the simulator's
			// store never does (its invariant could not tell that loss from
			// the collector's): TestHole10UnconfirmedKeepers.
			t.Logf("hole %s: TestHole10UnconfirmedKeepers", h)
			continue
		}
		if h == hole.LeaseUnfenced && limit < 3000 {
			// Two purges must overlap in the middle of a sweep, one of them
			// stopped past the lease: about one schedule in 8,000 (the first
			// is seed 2776). TestHole5TwoPurgers covers it every run.
			t.Logf("hole %s: searched with CASSBACK_SIM_HOLE_LIMIT=3000 or more", h)
			continue
		}
		if *simHoles != "" && !strings.Contains(*simHoles, strconv.Itoa(int(h))) {
			continue
		}
		n := limit
		if h == hole.ClockExemption {
			// A writer whose clock runs ahead must dedup against a pack a
			// purge condemns: with manifest trees and spooled packs the
			// first seed is 2345 (it was 118).
			n = max(limit, 4000)
		}
		t.Run(h.String(), func(t *testing.T) {
			defer hole.Set(h, true)()
			for i := range n {
				err := runSchedule(t, uint64(i+1), simConfig{hole: h})
				switch {
				case errors.Is(err, errNoEnd):
					t.Logf("seed %d did not end: not the invariant broken, searching on", i+1)
				case err != nil:
					t.Logf("found after %d schedules: %s", i+1, firstLine(err.Error()))
					return
				}
			}
			t.Fatalf("hole %s not found in %d schedules", h, n)
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// simConfig tunes one schedule for a hole to find.
type simConfig struct {
	hole     hole.Hole
	stepsOut *int
	trace    *string
	// hideSizes has its writers and repacks pad and spread their packs,
	// as an encrypted store's do (Repo.hideSizes): TestSimulator sets it
	// for one seed in four (hidesSizes). The found seeds and the hole
	// searches run without it, as when they were found.
	hideSizes bool
}

// hidesSizes reports whether TestSimulator runs seed with
// simConfig.hideSizes.
func hidesSizes(seed uint64) bool { return seed%4 == 0 }

// simRun is one schedule.
type simRun struct {
	t     testing.TB
	seed  uint64
	w     *sim.World
	st    *sim.Store
	rng   *rand.Rand
	dir   string
	cfg   index.Config
	gcOpt gc.Options
	hosts []*simHost
	procs []*simProc
	n     int // processes started

	last      *sim.Actor    // the actor of the last step
	tempo     time.Duration // the longest a process sleeps between its runs (0: never)
	pPause    int           // per mille, after a step: stop its process past the lease
	pCrash    int           // per mille, after a step: kill -9 its process
	hideSizes bool          // simConfig.hideSizes

	mu         sync.Mutex
	uploading  map[*sim.Actor]int           // actors waiting on a write that matters: how much likelier a stop is
	refs       map[string]map[chunk.ID]bool // session -> chunks its backup references, durable
	pending    map[string]map[chunk.ID]bool // session -> chunks referenced since its last Sync
	violations []string
	vandalized bool
	seen       map[string]bool   // backups whose manifest was ever stored
	expired    map[string]bool   // backups whose manifest and marker were both gone at a check
	removed    map[string]bool   // backups a purge set out to remove (PurgeOptions.Removing)
	cache      map[string]any    // decoded immutable objects, by key and ETag
	refsGen    int               // changes of refs
	inodes     map[uint64]uint64 // real inode -> the same in every run
	nextInode  uint64
	checked    [2]uint64         // store mutations and refsGen at the last full check
	keys       map[string]string // backup name -> its manifest key
}

type simHost struct {
	name       string
	data       string
	cache      string
	gen        int
	continuous bool
	skew       time.Duration
}

// simProc is one process: a main actor and the heartbeat actors its
// sessions spawn. Crashing or pausing it acts on all of them.
type simProc struct {
	name   string
	main   *sim.Actor
	others []*sim.Actor
	kind   string
	host   *simHost
	lives  int
}

func (p *simProc) actors() []*sim.Actor { return append(slices.Clone(p.others), p.main) }

func (p *simProc) done() bool {
	select {
	case <-p.main.Done():
		return true
	default:
		return false
	}
}

// runSchedule runs one seeded schedule to its end and returns the first
// violation of the invariant, with the seed and the trace.
func runSchedule(t *testing.T, seed uint64, cfg simConfig) error {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	opts := sim.Options{
		Seed:     seed,
		Horizon:  7 * 24 * time.Hour,
		StepTime: func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(3000)) * time.Millisecond },
	}
	if rng.IntN(3) == 0 || cfg.hole == hole.StaleNotRevoked {
		opts.Faults = sim.Faults{PError: 0.02, PLostResponse: 0.02, PDelay: 0.02}
	}
	if rng.IntN(5) == 0 {
		opts.WriterClock = true
	}
	if rng.IntN(4) == 0 {
		opts.NoConditional = true
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	defer random.SetSource(rand.NewChaCha8(key))()
	// Not t.TempDir: a long run would keep every schedule's files to the
	// end. The same folder for every run of a seed, in any process: the
	// trees of manifests record it, so it decides the IDs of their packs,
	// and their order decides requests (with the process ID in the name,
	// a seed found by the long mode did not replay in another process).
	// Processes running one seed at once take turns (a lock file).
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("cassback-sim-%d", seed))
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &simRun{t: t, seed: seed, w: sim.New(opts), rng: rng, dir: dir, uploading: map[*sim.Actor]int{}, seen: map[string]bool{}, keys: map[string]string{}, expired: map[string]bool{}, removed: map[string]bool{}, refs: map[string]map[chunk.ID]bool{}, pending: map[string]map[chunk.ID]bool{}, cache: map[string]any{}}
	s.st = s.w.Store()
	defer s.w.Close()
	s.gcOpt = gc.Options{Heartbeat: simHeartbeat, Lease: simLease, Grace: -1, NewPackMargin: -1, RepackThreshold: 0.5, HideSizes: cfg.hideSizes}
	s.hideSizes = cfg.hideSizes
	if rng.IntN(3) == 0 {
		s.gcOpt.Grace = time.Duration(1+rng.IntN(10)) * time.Minute
	}
	s.cfg = index.Config{Format: index.StoreFormat, ID: fmt.Sprintf("%032x", seed), Hash: "blake3-256",
		Chunker: chunk.DefaultParams(chunk.TestPol), PackSize: 1 << 20, Conditional: !opts.NoConditional}
	if _, err := index.Init(context.Background(), s.st, s.cfg); err != nil {
		return err
	}
	if s.cfg.Conditional {
		if err := gc.InitGeneration(context.Background(), s.st); err != nil {
			return err
		}
	}
	// Each schedule draws its tempo and its troubles, so that together they
	// cover quiet fleets and busy ones, rare pauses and frequent ones.
	s.pPause = []int{5, 30, 60}[rng.IntN(3)]
	s.pCrash = []int{0, 3, 10}[rng.IntN(3)]
	if rng.IntN(2) == 0 {
		s.tempo = time.Hour // periodic: processes sleep up to an hour between runs
	}
	s.setup(cfg)
	err = s.run()
	if cfg.stepsOut != nil {
		*cfg.stepsOut += s.w.Steps()
	}
	if cfg.trace != nil {
		*cfg.trace = s.w.Trace()
	}
	if err != nil {
		return fmt.Errorf("sim: seed %d: %w\nrerun: go test -run 'TestSimulator$' -sim.seed %d .\ntrace (last steps):\n%s", seed, err, seed, tail(s.w.Trace(), simTraceLines()))
	}
	return nil
}

func simTraceLines() int {
	if n, err := strconv.Atoi(os.Getenv("CASSBACK_SIM_TRACE")); err == nil {
		return n
	}
	return 60
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// setup makes the hosts and starts the processes.
func (s *simRun) setup(cfg simConfig) {
	nh := 2 + s.rng.IntN(2)
	for i := range nh {
		h := &simHost{name: fmt.Sprintf("h%d", i), continuous: s.rng.IntN(2) == 0}
		h.data = filepath.Join(s.dir, h.name, "data")
		h.cache = filepath.Join(s.dir, h.name, "cache")
		switch {
		case cfg.hole == hole.ClockExemption:
			h.skew = time.Duration(s.rng.IntN(40)) * time.Minute // running ahead
		case s.rng.IntN(3) == 0:
			h.skew = time.Duration(s.rng.IntN(40)-20) * time.Minute
		}
		s.hosts = append(s.hosts, h)
		for range 2 + s.rng.IntN(3) {
			s.flush(h)
		}
		s.start(h.name, "backup", h, 1+s.rng.IntN(3))
	}
	purgers, moreLives := 1+s.rng.IntN(2), 0
	if cfg.hole == hole.LeaseUnfenced {
		purgers, moreLives = 3, 3 // purges that overlap when one is stopped
	}
	for i := range purgers {
		s.start(fmt.Sprintf("purge%d", i), "purge", nil, 1+s.rng.IntN(3)+moreLives)
	}
	s.start("restore", "restore", nil, 1)
	if s.rng.IntN(3) == 0 {
		s.start("validate", "validate", nil, 1)
	}
}

// start spawns a process of the given kind.
func (s *simRun) start(name, kind string, h *simHost, lives int) *simProc {
	p := &simProc{name: name, kind: kind, host: h, lives: lives}
	s.procs = append(s.procs, p)
	s.spawn(p)
	return p
}

func (s *simRun) spawn(p *simProc) {
	s.n++
	p.others = nil
	skew := time.Duration(0)
	if p.host != nil {
		skew = p.host.skew
	}
	name := fmt.Sprintf("%s#%d", p.name, s.n)
	p.main = s.w.Spawn(name, skew, func(ctx context.Context) error {
		r, err := s.open(ctx, p)
		if err != nil {
			return err
		}
		// Between opening the store and its first request of the work
		// (a scan of a large data directory, a scheduler's delay).
		if err := s.pace(ctx); err != nil {
			return err
		}
		switch p.kind {
		case "backup":
			if p.host.continuous {
				return s.continuousBackup(ctx, r, p)
			}
			return s.oneShot(ctx, r, p)
		case "purge":
			return s.purge(ctx, r, p)
		case "restore":
			return s.restore(ctx, r)
		default:
			_, err := r.Validate(ctx, ValidateOptions{Threads: 1, Checksum: s.rng.IntN(2) == 0})
			return err
		}
	})
}

// simStore is the simulated store as processes see it: it notes each
// actor's pending write, so that chaos can stop a process in the middle of
// a large PUT (a manifest or a pack) more often than between two small
// requests, as a slow upload makes a stall there more likely. A manifest's
// PUT, the commit's window, and a purge's deletion of packs are likelier
// still: a backup makes few of the one, a purge few of the other, and
// those are the windows where a stopped process does harm.
type simStore struct {
	*sim.Store
	s *simRun
}

// note records how much likelier a stop of the actor is while its request
// for key is pending, and returns the function that forgets it.
func (st *simStore) note(ctx context.Context, key string, weight int) func() {
	a := sim.ActorOf(ctx)
	if a == nil || weight == 0 {
		return func() {}
	}
	st.s.mu.Lock()
	st.s.uploading[a] = weight
	st.s.mu.Unlock()
	return func() {
		st.s.mu.Lock()
		delete(st.s.uploading, a)
		st.s.mu.Unlock()
	}
}

// putWeight is how much likelier a stop is during a PUT of key.
func putWeight(key string) int {
	switch {
	case strings.HasPrefix(key, "manifests/"):
		return 20
	case strings.HasPrefix(key, "packs/"):
		return 5
	}
	return 0
}

// deleteWeight is how much likelier a stop is during a deletion of key.
func deleteWeight(key string) int {
	if strings.HasPrefix(key, "packs/") {
		return 20
	}
	return 0
}

func (st *simStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	defer st.note(ctx, key, putWeight(key))()
	return st.Store.Put(ctx, key, data, size)
}

// PutVerified is weighed as Put is: packs are stored through it
// (remote.PutDurable), and the embedded store's method would pass the
// weight by.
func (st *simStore) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	defer st.note(ctx, key, putWeight(key))()
	return st.Store.PutVerified(ctx, key, data, size)
}

func (st *simStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	defer st.note(ctx, key, putWeight(key))()
	return st.Store.PutIf(ctx, key, data, ifMatch)
}

func (st *simStore) Delete(ctx context.Context, key string) error {
	defer st.note(ctx, key, deleteWeight(key))()
	return st.Store.Delete(ctx, key)
}

func (st *simStore) DeleteMany(ctx context.Context, keys []string) error {
	if len(keys) > 0 {
		defer st.note(ctx, keys[0], deleteWeight(keys[0]))()
	}
	return st.Store.DeleteMany(ctx, keys)
}

// pace sleeps as a process does between its runs, by the schedule's tempo.
func (s *simRun) pace(ctx context.Context) error {
	if s.tempo == 0 {
		return nil
	}
	return s.w.Sleep(ctx, time.Duration(s.rng.Int64N(int64(s.tempo))))
}

// simClock is a process's clock: the virtual time plus its skew; sleeping
// waits on virtual time as the actor whose context it is given.
type simClock struct {
	w    *sim.World
	skew time.Duration
}

func (c simClock) Now() time.Time { return c.w.Now().Add(c.skew) }
func (c simClock) Sleep(ctx context.Context, d time.Duration) error {
	return c.w.Sleep(ctx, d)
}

// open opens the store as a process of p, with its clock, its heartbeats
// as actors of their own, and the observer of what its backups reference.
func (s *simRun) open(ctx context.Context, p *simProc) (*Repo, error) {
	o := Options{Log: quietSim()}
	skew := time.Duration(0)
	if p.host != nil {
		o.CacheRoot = p.host.cache
		skew = p.host.skew
	}
	r, err := Open(ctx, &simStore{s.st, s}, o)
	if err != nil {
		return nil, err
	}
	nc := r.GC.NoConditional
	r.GC = s.gcOpt
	r.GC.NoConditional = nc
	r.GC.Clock = simClock{s.w, skew}
	r.spawn = func(ctx context.Context, name string, fn func(context.Context)) func() {
		var cancel context.CancelFunc
		a := s.w.Spawn(p.name+"-"+name, skew, func(actx context.Context) error {
			var c context.Context
			c, cancel = context.WithCancel(actx)
			fn(c)
			return nil
		})
		p.others = append(p.others, a)
		// Stopping runs in the caller's step: the cancellation makes the
		// sleeping heartbeat runnable, and the caller yields until it ends.
		yield := context.WithoutCancel(ctx)
		return func() {
			cancel()
			for {
				select {
				case <-a.Done():
					return
				default:
					if err := s.w.Sleep(yield, 0); err != nil {
						<-a.Done()
						return
					}
				}
			}
		}
	}
	// Writers compact their index files after every few commits, so that
	// schedules meet index files deleted under readers and purges.
	r.compactAt = 2
	r.hideSizes = s.hideSizes
	r.inode = func(ino uint64) uint64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if o, ok := s.inodes[ino]; ok {
			return o
		}
		// Not written by flush: numbered when first seen.
		return s.numberLocked(ino)
	}
	r.observe = func(session string, f *manifest.File) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if f == nil { // synced: every chunk recorded so far is durable
			s.refsGen++
			m := s.refs[session]
			if m == nil {
				m = map[chunk.ID]bool{}
				s.refs[session] = m
			}
			for c := range s.pending[session] {
				m[c] = true
			}
			delete(s.pending, session)
			return
		}
		m := s.pending[session]
		if m == nil {
			m = map[chunk.ID]bool{}
			s.pending[session] = m
		}
		for _, c := range f.Chunks {
			m[c.ID] = true
		}
	}
	return r, nil
}

// forget drops from a session's references the chunks of an SSTable its
// continuous backup no longer holds (compacted away), unless a file it
// still holds has them: no manifest of the session names them again, so a
// purge may delete them once no committed backup does (seed 33859: a
// purge condemned the pack of an SSTable stored and then compacted before
// any manifest named it, and deleted it while the session lived).
func (s *simRun) forget(session string, dropped *liveSST, live map[sstKey]*liveSST) {
	keep := map[chunk.ID]bool{}
	for _, l := range live {
		for _, f := range l.files {
			for _, c := range f.Chunks {
				keep[c.ID] = true
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range dropped.files {
		for _, c := range f.Chunks {
			if !keep[c.ID] {
				delete(s.refs[session], c.ID)
				delete(s.pending[session], c.ID)
			}
		}
	}
	s.refsGen++
}

func quietSim() *slog.Logger { return slog.New(slog.DiscardHandler) }

// flush writes a new small SSTable into the host's data directory, its
// Data.db drawn from a pool shared by every host (so chunks dedup across
// hosts, as a node replaced from its backup or a cloned cluster does).
func (s *simRun) flush(h *simHost) string {
	h.gen++
	ks := fmt.Sprintf("ks%d", s.rng.IntN(2))
	dir := filepath.Join(h.data, ks, "t-"+strings.Repeat("ab", 16))
	prefix := fmt.Sprintf("nb-%d-big-", h.gen)
	os.MkdirAll(dir, 0o755)
	// Half the contents are shared by every host, half are the host's own:
	// once the host's backups are purged, its own contents are garbage
	// while still on its disk (a node backed up again from scratch).
	n := s.rng.IntN(4)
	if s.rng.IntN(2) == 0 {
		n += 10 * (1 + slices.Index(s.hosts, h))
	}
	content := bytes.Repeat([]byte(fmt.Sprintf("content %d ", n)), 100+n*37)
	os.WriteFile(filepath.Join(dir, prefix+"Data.db"), content, 0o644)
	os.WriteFile(filepath.Join(dir, prefix+"TOC.txt"), []byte("Data.db\nTOC.txt\n"), 0o644)
	now := s.w.Now()
	for _, name := range []string{"Data.db", "TOC.txt"} {
		p := filepath.Join(dir, prefix+name)
		os.Chtimes(p, now, now)
		s.numberInode(p)
	}
	return filepath.Join(ks, "t-"+strings.Repeat("ab", 16), prefix)
}

// lockFile takes an exclusive lock on the file at path, creating it, and
// returns its release, which removes the file (a long run leaves none of
// its million behind). A lock taken on a file another holder removed
// meanwhile is taken again on the new one.
func lockFile(path string) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return func() {
				os.Remove(path)
				f.Close() // and the lock with it
			}, nil
		}
		f.Close()
	}
}

// numberInode gives the file at path the next inode ordinal. Files are
// numbered as flush writes them, in the schedule's order, so every run of a
// seed records the same inodes whatever order backup's workers stat them in
// (and an inode the file system reuses gets a number of its own).
func (s *simRun) numberInode(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.numberLocked(uint64(st.Ino))
}

func (s *simRun) numberLocked(ino uint64) uint64 {
	if s.inodes == nil {
		s.inodes = map[uint64]uint64{}
	}
	s.nextInode++
	s.inodes[ino] = s.nextInode
	return s.nextInode
}

// compact removes one SSTable of the host, as a compaction does.
func (s *simRun) compact(h *simHost) {
	matches, _ := filepath.Glob(filepath.Join(h.data, "*", "*", "*-TOC.txt"))
	if len(matches) < 2 {
		return
	}
	toc := matches[s.rng.IntN(len(matches))]
	prefix := strings.TrimSuffix(toc, "TOC.txt")
	os.Remove(prefix + "Data.db")
	os.Remove(toc)
}

func (s *simRun) oneShot(ctx context.Context, r *Repo, p *simProc) error {
	h := p.host
	for i := range 1 + s.rng.IntN(3) {
		if i > 0 {
			if err := s.pace(ctx); err != nil {
				return err
			}
		}
		switch s.rng.IntN(3) {
		case 0:
			s.flush(h)
		case 1:
			s.compact(h)
			s.flush(h)
		}
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{h.data}, Host: h.name, Threads: 1, Now: r.GC.Clock.Now}); err != nil {
			return err
		}
	}
	return nil
}

// continuousBackup drives the continuous backup's own state (live
// SSTables, dirty keyspaces, coalesced commits and acknowledgements)
// without the file-system watcher: each loop turn is a flush, a
// compaction or a commit.
func (s *simRun) continuousBackup(ctx context.Context, r *Repo, p *simProc) error {
	h := p.host
	opts := ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{h.data}, Host: h.name, Threads: 1, Now: r.GC.Clock.Now}}.withDefaults()
	c := &continuous{opts: opts, learned: map[string]time.Time{}, items: map[uint64]*item{}, live: map[sstKey]*liveSST{},
		dirty: map[string]bool{}, keyspaces: map[string]bool{}, synced: map[string]bool{h.data: true}, scanned: map[string]bool{}}
	var err error
	if c.b, err = r.beginBackup(ctx, opts.BackupOptions, nil, opts.Now(), c.learn); err != nil {
		return err
	}
	defer c.b.end(ctx)
	pk := c.b.w.NewPacker()
	add := func(rel string) error {
		var files []manifest.File
		for _, comp := range []string{"Data.db", "TOC.txt"} {
			f, err := os.Open(filepath.Join(h.data, rel+comp))
			if err != nil {
				return err
			}
			rec, _, err := c.b.storeFile(ctx, pk, h.data, filepath.ToSlash(rel+comp), f, storeOptions{})
			f.Close()
			if err != nil {
				return err
			}
			files = append(files, rec)
		}
		ks, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		c.live[sstKey{h.data, rel}] = &liveSST{ks: ks, table: tableKey{"t", strings.Repeat("ab", 16)}, files: files}
		c.dirty[ks], c.keyspaces[ks] = true, true
		return nil
	}
	for range 3 + s.rng.IntN(6) {
		switch s.rng.IntN(4) {
		case 0, 1:
			if err := add(s.flush(h)); err != nil {
				return err
			}
		case 2:
			keys := slices.SortedFunc(maps.Keys(c.live), func(a, b sstKey) int { return strings.Compare(a.sst, b.sst) })
			if len(keys) > 0 {
				k := keys[s.rng.IntN(len(keys))]
				c.dirty[c.live[k].ks] = true
				dropped := c.live[k]
				delete(c.live, k)
				s.forget(c.b.sess.s.ID(), dropped, c.live)
			}
		default:
			if err := c.commit(ctx); err != nil {
				return err
			}
		}
	}
	return c.commit(ctx)
}

// purge purges a random host now and then for as long as backups run, as
// a purge scheduled every few minutes would.
func (s *simRun) purge(ctx context.Context, r *Repo, p *simProc) error {
	for i := 0; i < 12 && (i < 1 || s.backupsRunning()); i++ {
		if i > 0 {
			if err := s.w.Sleep(ctx, time.Duration(1+s.rng.IntN(15))*time.Minute); err != nil {
				return err
			}
		}
		h := s.hosts[s.rng.IntN(len(s.hosts))]
		cut := r.GC.Clock.Now().Add(-time.Duration(s.rng.IntN(60)) * time.Minute)
		if s.rng.IntN(2) == 0 {
			cut = r.GC.Clock.Now().Add(time.Hour) // everything of the host
		}
		removing := func(name string) {
			s.mu.Lock()
			s.removed[name] = true
			s.mu.Unlock()
		}
		// Every other purge judges packs from shards spilled to disk (a
		// memory bound of 4 KiB), without drawing from the schedule's
		// random numbers, so that found seeds still replay.
		memory := int64(0)
		if i%2 == 1 {
			memory = 4 << 10
		}
		// Likewise every third purge lists every pack; the others list
		// them only when no purge has (design §4.3 step 2, "Scans").
		scan := i%3 == 2
		_, err := r.Purge(ctx, PurgeOptions{Host: h.name, Before: cut, PurgeLatest: s.rng.IntN(2) == 0, Holder: sim.ActorOf(ctx).Name(), Threads: 1, Removing: removing, Memory: memory, ScanPacks: scan})
		if errors.Is(err, gc.ErrLeaseHeld) || errors.Is(err, gc.ErrNeedExclusive) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// backupsRunning reports whether a backup process has not ended for good.
func (s *simRun) backupsRunning() bool {
	for _, p := range s.procs {
		if p.kind == "backup" && (!p.done() || p.lives > 1) {
			return true
		}
	}
	return false
}

// restore restores the latest backups of a host; a chunk that cannot be
// found in a backup its session protected is a violation.
func (s *simRun) restore(ctx context.Context, r *Repo) error {
	h := s.hosts[s.rng.IntN(len(s.hosts))]
	ms, err := Select(ctx, s.st, h.name, "", nil, s.w.Now().Add(time.Hour))
	if err != nil {
		return err
	}
	dst, _ := os.MkdirTemp(s.dir, "restore")
	res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, Threads: 1, NoChown: true})
	if errors.Is(err, gc.ErrRevoked) {
		return err // stopped past its lease: its reads were no longer protected
	}
	for _, f := range res.Failed {
		if errors.Is(f.Err, index.ErrMissing) || errors.Is(f.Err, index.ErrCorrupt) {
			s.violation(fmt.Sprintf("restore of %s: %s: %v", f.Backup, f.Path, f.Err))
		}
	}
	return err
}

func (s *simRun) violation(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, v)
}

// run steps the world until every process is done, injecting crashes,
// restarts, pauses and damage between steps, and checks the invariant
// after every step.
// errNoEnd is a schedule that did not end: a liveness failure, not a
// violation of the invariant.
var errNoEnd = errors.New("schedule did not end in 20,000 steps")

func (s *simRun) run() error {
	for step := 0; ; step++ {
		if step > 20000 {
			return errNoEnd
		}
		s.chaos()
		a, ok := s.w.Step()
		s.last = a
		if !ok {
			if s.restartOne() {
				continue
			}
			break
		}
		if err := s.check(); err != nil {
			return fmt.Errorf("step %d: %w", s.w.Steps(), err)
		}
	}
	if err := s.check(); err != nil {
		return fmt.Errorf("at the end: %w", err)
	}
	return s.final()
}

// chaos, between steps, stops (SIGSTOP, for longer than the lease) or
// kills (kill -9) the process that made the last request now and then,
// resumes stopped ones, and rarely damages an index file.
func (s *simRun) chaos() {
	p := s.procOf(s.last)
	x := s.rng.IntN(1000)
	pause := s.pPause
	s.mu.Lock()
	if w := s.uploading[s.last]; w > 0 {
		pause *= w
	}
	s.mu.Unlock()
	switch {
	case p != nil && x < s.pCrash:
		for _, a := range p.actors() {
			a.Crash()
		}
	case p != nil && x < s.pCrash+pause:
		for _, a := range p.actors() {
			a.Pause()
		}
		s.w.Advance(simLease + time.Duration(s.rng.IntN(10))*time.Minute)
	case x < s.pCrash+pause+10:
		// Now all stopped processes go on, now one alone: a purge may run
		// its course while a backup stays stopped, and the reverse.
		one := s.stopped()
		for _, p := range s.procs {
			if x%2 == 0 && p != one {
				continue
			}
			for _, a := range p.actors() {
				a.Resume()
			}
		}
	case x == 999 && s.rng.IntN(4) == 0:
		s.vandalize()
	}
}

// stopped returns a stopped process, drawn at random, or nil.
func (s *simRun) stopped() *simProc {
	var ps []*simProc
	for _, p := range s.procs {
		if !p.done() && p.main.Paused() {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return ps[s.rng.IntN(len(ps))]
}

// procOf returns the process an actor belongs to, or nil.
func (s *simRun) procOf(a *sim.Actor) *simProc {
	if a == nil {
		return nil
	}
	for _, p := range s.procs {
		if slices.Contains(p.actors(), a) && !p.done() {
			return p
		}
	}
	return nil
}

// restartOne resumes paused processes, or restarts one that ended with
// lives left, and reports whether anything can still run.
func (s *simRun) restartOne() bool {
	for _, p := range s.procs {
		for _, a := range p.actors() {
			select {
			case <-a.Done():
			default:
				// An actor that is not paused sleeps past the horizon:
				// resuming it would change nothing (seed 13110 spun so).
				if a.Paused() {
					a.Resume()
					return true
				}
			}
		}
	}
	for _, p := range s.procs {
		if p.done() && p.lives > 1 {
			p.lives--
			s.w.Advance(time.Duration(s.rng.IntN(20)) * time.Minute)
			s.spawn(p)
			return true
		}
	}
	return false
}

// vandalize flips a byte of an index file or deletes one, as a lost or
// damaged object would.
func (s *simRun) vandalize() {
	objs := s.st.Snapshot("index/")
	if len(objs) == 0 {
		return
	}
	o := objs[s.rng.IntN(len(objs))]
	ctx := context.Background()
	if s.rng.IntN(2) == 0 {
		s.st.Delete(ctx, o.Key)
	} else {
		b := bytes.Clone(o.Data)
		b[s.rng.IntN(len(b))] ^= 0x40
		s.st.Put(ctx, o.Key, bytes.NewReader(b), int64(len(b)))
	}
	s.vandalized = true
}

// check checks the invariant on the store as it is between two steps.
func (s *simRun) check() error {
	s.mu.Lock()
	if len(s.violations) > 0 {
		v := s.violations[0]
		s.mu.Unlock()
		return errors.New(v)
	}
	at := [2]uint64{s.st.Mutations(), uint64(s.refsGen)}
	s.mu.Unlock()
	if at == s.checked {
		return nil // nothing it checks has changed
	}
	s.checked = at
	have := s.storedChunks()
	committed, err := s.committed()
	if err != nil {
		return err
	}
	s.noteExpired(committed)
	for _, c := range committed {
		name := c.Name
		key, err := manifest.Key(name)
		if err != nil {
			return fmt.Errorf("commit marker of %s: %v", name, err)
		}
		mo, ok := s.st.Peek(key)
		if !ok && (s.expired[name] || s.removed[name]) {
			// A marker written late, or written again by another purge
			// while this one removed it, for a backup a purge removed on
			// purpose: readers pass over it.
			continue
		}
		if !ok {
			return fmt.Errorf("committed backup %s: its manifest is gone", name)
		}
		if h := s.hashOf(mo); h != c.Hash {
			return fmt.Errorf("committed backup %s: its manifest object (hash %s) is not the one its marker names (%s)", name, h, c.Hash)
		}
		m, err := s.manifest(mo)
		if err != nil {
			return fmt.Errorf("committed backup %s: %v", name, err)
		}
		for ref := range m.Refs() {
			if !have[ref.ID] {
				return fmt.Errorf("committed backup %s: chunk %s is in no stored pack", name, ref.ID)
			}
		}
	}
	for _, o := range s.st.Snapshot("sessions/") {
		id := o.Key[strings.LastIndexByte(o.Key, '/')+1:]
		if !bytes.Contains(o.Data, []byte(`"state":"live"`)) {
			continue
		}
		s.mu.Lock()
		refs := s.refs[id]
		var missing []chunk.ID
		for c := range refs {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		s.mu.Unlock()
		if len(missing) > 0 {
			return fmt.Errorf("live session %s: chunk %s it references was deleted", o.Key, missing[0])
		}
	}
	return nil
}

// committed returns every backup the commit markers in the store name,
// with its manifest's hash, in key order; a marker key that does not
// parse is a violation (only cassback writes markers here).
func (s *simRun) committed() ([]manifest.Commit, error) {
	var cs []manifest.Commit
	for _, o := range s.st.Snapshot("commits/") {
		// A marker's key is what it says: parsed once a schedule.
		if v, ok := s.cache[o.Key]; ok {
			cs = append(cs, v.([]manifest.Commit)...)
			continue
		}
		host, at, es, err := manifest.ParseCommitKey(o.Key)
		if err != nil {
			return nil, err
		}
		var mine []manifest.Commit
		for _, e := range es {
			mine = append(mine, manifest.Commit{Name: manifest.BackupName(at, e.Keyspace, host), Hash: e.Hash})
		}
		s.cache[o.Key] = mine
		cs = append(cs, mine...)
	}
	return cs, nil
}

// hashOf returns the hash of a manifest object, once per version.
func (s *simRun) hashOf(o sim.Object) manifest.Hash {
	k := o.Key + "@" + o.Info.ETag + "#hash"
	if v, ok := s.cache[k]; ok {
		return v.(manifest.Hash)
	}
	h := manifest.HashOf(o.Data)
	s.cache[k] = h
	return h
}

// noteExpired remembers the backups a purge removed: both their marker and
// their manifest gone. A marker their writer writes after that, late, is
// not a committed backup losing its manifest.
func (s *simRun) noteExpired(committed []manifest.Commit) {
	for _, o := range s.st.Snapshot("manifests/") {
		s.seen[o.Key[strings.LastIndexByte(o.Key, '/')+1:]] = true
	}
	marked := map[string]bool{}
	for _, c := range committed {
		marked[c.Name] = true
	}
	for n := range s.seen {
		key, ok := s.keys[n]
		if !ok {
			key, _ = manifest.Key(n)
			s.keys[n] = key
		}
		if _, m := s.st.Peek(key); !m && !marked[n] {
			s.expired[n] = true
		}
	}
}

// storedChunks returns every chunk in a stored pack, read from the packs
// themselves (small here), which is what a reader with an empty cache can
// find through the index files or the packs' headers.
func (s *simRun) storedChunks() map[chunk.ID]bool {
	have := map[chunk.ID]bool{}
	for _, o := range s.st.Snapshot("packs/") {
		entries, err := s.packEntries(o)
		if err != nil {
			continue
		}
		for _, e := range entries {
			have[e.ID] = true
		}
	}
	return have
}

func (s *simRun) packEntries(o sim.Object) ([]pack.Entry, error) {
	k := o.Key + "@" + o.Info.ETag
	if v, ok := s.cache[k]; ok {
		return v.([]pack.Entry), nil
	}
	e, err := pack.Parse(o.Data, chunk.Namer{})
	if err == nil {
		s.cache[k] = e
	}
	return e, err
}

func (s *simRun) manifest(o sim.Object) (*manifest.Manifest, error) {
	k := o.Key + "@" + o.Info.ETag
	if v, ok := s.cache[k]; ok {
		return v.(*manifest.Manifest), nil
	}
	m, err := manifest.Read(context.Background(), o.Data, snapChunks{s})
	if err == nil {
		s.cache[k] = m
	}
	return m, err
}

// snapChunks reads chunks from the packs stored now, as the oracle sees
// the store (not through the simulated store's requests).
type snapChunks struct{ s *simRun }

func (c snapChunks) FetchChunks(_ context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	want := map[chunk.ID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, o := range c.s.st.Snapshot("packs/") {
		entries, err := c.s.packEntries(o)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !want[e.ID] || int(e.Off)+int(e.Len) > len(o.Data) {
				continue
			}
			data := o.Data[e.Off : e.Off+e.Len]
			if chunk.Sum(data) != e.ID {
				continue
			}
			delete(want, e.ID)
			if err := fn(e.ID, data); err != nil {
				return err
			}
		}
	}
	for id := range want {
		return fmt.Errorf("chunk %s is in no stored pack", id)
	}
	return nil
}

// final checks the quiescent store: a validation with checksums finds
// nothing missing or corrupt, and with hideSizes every pack is padded.
func (s *simRun) final() error {
	if s.hideSizes {
		for _, o := range s.st.Snapshot("packs/") {
			if n := int64(len(o.Data)); pack.Padme(n) != n {
				return fmt.Errorf("pack %s: %d bytes, not padded (Padmé size %d)", o.Key, n, pack.Padme(n))
			}
		}
	}
	r, err := Open(context.Background(), s.st, Options{Log: quietSim()})
	if err != nil {
		return err
	}
	r.GC = s.gcOpt
	rep, err := r.Validate(context.Background(), ValidateOptions{Checksum: true, Threads: 1})
	if err != nil {
		return fmt.Errorf("final validate: %w", err)
	}
	for _, p := range rep.Problems {
		if p.Kind == Unindexed && s.vandalized {
			continue
		}
		return fmt.Errorf("final validate: %s %s %s: %s", p.Kind, p.Backup, p.File, p.What)
	}
	return nil
}
