package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
)

type purgeConfig struct {
	o               cassback.PurgeOptions
	before, host    string
	grace, margin   time.Duration
	scanEvery       time.Duration
	repackThreshold float64
	memoryMB        int
	json            bool
}

func purgeCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var c purgeConfig
	o := &c.o
	fs := flag.NewFlagSet("cassback purge", flag.ContinueOnError)
	fs.IntVar(&o.KeepDays, "keep-days", 0, "remove this host's backups older than N days (by the store's clock)")
	fs.StringVar(&c.before, "purge-before", "", "remove this host's backups taken before this time (UTC unless it has a zone)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print what would be removed and the bytes it would free; change nothing")
	fs.StringVar(&c.host, "host", "", "host whose backups to remove (default: this host's fully qualified name), also one that no longer runs; other hosts' backups are never removed")
	fs.BoolVar(&o.PurgeLatest, "purge-latest", false, "also remove the newest backup of a keyspace when it is older than the cut-off")
	fs.DurationVar(&c.grace, "grace", time.Hour, "minimum time between condemning an unreferenced pack and deleting it (0 for none)")
	fs.DurationVar(&c.margin, "new-pack-margin", time.Hour, "never condemn a pack written less than this long ago (0 for none)")
	fs.BoolVar(&o.ScanPacks, "scan-packs", false, "list every pack of the store to find packs no index file names (crashed uploads) and indexed packs that are gone; purges do so anyway when none has for --scan-every")
	fs.DurationVar(&c.scanEvery, "scan-every", 7*24*time.Hour, "list every pack when no purge has for this long (0: every purge); between such scans a purge reads only what changed")
	fs.Float64Var(&c.repackThreshold, "repack-threshold", 0.5, "rewrite a live pack when more than this fraction of it is unreferenced (1 disables)")
	fs.IntVar(&c.memoryMB, "purge-memory-mb", 512, "bound in MiB on what the purge holds of the store's chunks; beyond it they are spilled to the cache folder and judged in shards (the packs' records, 64 bytes each, come on top)")
	fs.BoolVar(&c.json, "json", false, "print one JSON document (schema in docs/cli.md): with --dry-run the plan, else what was done")
	fs.BoolVar(&o.Exclusive, "exclusive", false, "assert that no other cassback process uses the store while this purge runs: needed on a store without atomic conditional writes (see check-store); every session is then removed as dead")
	return &ffcli.Command{
		Name:       "purge",
		ShortUsage: "cassback [global options] purge [KEYSPACE] (--keep-days N | --purge-before DATE) [--dry-run] [--host H] [--json]",
		ShortHelp:  "remove old backups and the data only they use",
		LongHelp: `Removes the host's backups (manifests) of one keyspace, or of all, older than
the cut-off, always keeping the newest backup of each keyspace unless
--purge-latest; other hosts' backups are never touched. Then it collects
garbage: packs that no remaining backup of any host references are
condemned, and deleted once every backup running at that moment has
finished or acknowledged it, --grace has passed and a fresh look at every
backup still finds them unreferenced — by this purge or a later one. Mostly
dead packs are rewritten (--repack-threshold). Backups keep running while a
purge runs; one purge runs at a time. Nothing is deleted while a backup,
an index file or a pack it needs cannot be read (the output says which).
On a store without atomic conditional writes (cassback check-store), purge
runs only with --exclusive.

--host may name a host that no longer runs (a decommissioned node, which
cassback status flags as stale): the purge may run on any machine. Add
--purge-latest to remove its last backups too.`,
		FlagSet: fs,
		Options: opts,
		Exec:    func(ctx context.Context, args []string) error { return runPurge(ctx, g, &c, args) },
	}
}

func runPurge(ctx context.Context, g *globals, c *purgeConfig, args []string) error {
	o := &c.o
	if len(args) > 1 {
		return usagef("purge takes at most one keyspace, got %d arguments", len(args))
	}
	if err := g.setup(); err != nil {
		return err
	}
	// g.setup checked the ranges of --keep-days, --grace,
	// --new-pack-margin, --scan-every and --repack-threshold (limits).
	if (o.KeepDays > 0) == (c.before != "") {
		return usagef("give exactly one of --keep-days and --purge-before")
	}
	if c.before != "" {
		t, err := manifest.ParseTime(c.before)
		if err != nil {
			return usagef("--purge-before: %v", err)
		}
		o.Before = t
	}
	if c.host == "" {
		c.host = defaultHost()
	}
	if err := checkHost(c.host); err != nil {
		return err
	}
	o.Host, o.Keyspaces, o.Holder = c.host, args, defaultHost()
	r, err := g.repo(ctx, false)
	if err != nil {
		return err
	}
	r.GC.Grace, r.GC.NewPackMargin, r.GC.RepackThreshold = orNone(c.grace), orNone(c.margin), c.repackThreshold
	r.GC.ScanEvery = orNone(c.scanEvery)
	c.o.Memory = int64(c.memoryMB) << 20
	if os.Getenv("GOMEMLIMIT") == "" {
		// The bound and half as much again for the packs' records: the
		// runtime collects harder near it rather than let the heap
		// double.
		debug.SetMemoryLimit(c.o.Memory + c.o.Memory/2)
	}
	if g.endpoint == "survey" {
		r.GC.RepackThreshold = 1 // a survey holds no chunk data to copy
	}
	res, err := r.Purge(ctx, *o)
	if c.json {
		return firstErr(err, writeJSON(g.stdout, purgeJSON(*o, res)))
	}
	printPurge(g, *o, res)
	return err
}

// orNone maps a flag's 0 ("none") to the protocol's "none" (-1).
func orNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func printPurge(g *globals, o cassback.PurgeOptions, res cassback.PurgeResult) {
	w := g.stdout
	fmt.Fprintf(w, "Purge backups before %s\n", res.Cutoff.UTC().Format("2006-01-02T15:04:05.000000"))
	if o.DryRun {
		fmt.Fprintln(w, "DRY RUN: no files deleted, candidate files:")
	} else {
		fmt.Fprintln(w, "Deleted files:")
	}
	fmt.Fprintln(w)
	if len(res.Manifests) == 0 {
		fmt.Fprintln(w, "No files")
	}
	for _, n := range res.Manifests {
		fmt.Fprintln(w, n)
	}
	for _, n := range res.Kept {
		fmt.Fprintf(w, "Kept, the newest backup of its keyspace: %s\n", n)
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "Unreadable, never counted or removed: %s: %s\n", s.Name, s.Why)
	}
	fmt.Fprintln(w)
	if o.DryRun {
		printPlan(w, res.Plan)
		return
	}
	rep := res.GC
	printScan(w, res.Plan)
	for _, b := range rep.Blocked {
		fmt.Fprintf(w, "Nothing deleted: %s\n", b)
	}
	for _, n := range rep.Withdrawn {
		fmt.Fprintf(w, "Withdrawn, never committed: %s\n", n)
	}
	if rep.Repaired > 0 {
		fmt.Fprintf(w, "Wrote the commit markers of %d backups whose sessions died\n", rep.Repaired)
	}
	fmt.Fprintf(w, "Condemned %d packs (%s); deleted %d packs (%s freed); kept %d condemned packs referenced again; repacked %d packs (%s)\n",
		rep.Condemned, human(rep.CondemnedBytes), rep.Deleted, human(rep.DeletedBytes), rep.Resurrected, rep.Repacked, human(rep.RepackedBytes))
	printWaiting(w, rep.Waiting)
	for _, s := range rep.RevokedSessions {
		fmt.Fprintf(w, "Revoked stale session: %s\n", s)
	}
	if res.TempRemoved > 0 {
		fmt.Fprintf(w, "Removed %d temporary files left by crashed writes\n", res.TempRemoved)
	}
}

// printPlan prints what a purge would do to the packs.
func printPlan(w io.Writer, p *gc.Plan) {
	if p == nil {
		return
	}
	printScan(w, p)
	for _, b := range p.Blocked {
		fmt.Fprintf(w, "Would delete nothing: %s\n", b)
	}
	for _, n := range p.Withdraw {
		fmt.Fprintf(w, "Would withdraw, never committed: %s\n", n)
	}
	fmt.Fprintf(w, "Would condemn %d unreferenced packs (%s) and free them once no backup needs them\n", len(p.Condemn), human(p.CondemnBytes))
	if len(p.Repack) > 0 {
		fmt.Fprintf(w, "Would repack %d mostly unreferenced packs (%s), then condemn them\n", len(p.Repack), human(p.RepackBytes))
	}
	for _, s := range p.Sweep {
		fmt.Fprintf(w, "Would delete condemned set %s (%d packs, %s) once every session acknowledged it, unless a fresh look finds them referenced\n", s.ID, len(s.Packs), human(s.Bytes))
	}
	if len(p.Blocked) == 0 && len(p.StaleIndex) > 0 {
		fmt.Fprintf(w, "Would rewrite %d index files without the packs they name that are gone\n", len(p.StaleIndex))
	}
	printWaiting(w, p.Waiting)
	for _, s := range p.Stale {
		fmt.Fprintf(w, "Stale session, revoked: %s\n", s.Key)
	}
}

func printWaiting(w io.Writer, ws []gc.Waiting) {
	for _, s := range ws {
		fmt.Fprintf(w, "Waiting: condemned set %s (%d packs): %s\n", s.Set.ID, len(s.Set.Packs), s.Reason)
	}
}

// printScan says whether the purge listed every pack, and why.
func printScan(w io.Writer, p *gc.Plan) {
	if p == nil {
		return
	}
	if p.Scanned {
		fmt.Fprintf(w, "Listed every pack: %s\n", p.ScanWhy)
	} else {
		fmt.Fprintf(w, "Judged packs from the index files, without listing them: %s\n", p.ScanWhy)
	}
}
