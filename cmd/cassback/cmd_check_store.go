package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/storecheck"
)

// errCheckFailed is returned when a check of check-store fails.
var errCheckFailed = errors.New("store check failed")

func checkStoreCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var o storecheck.Options
	fs := flag.NewFlagSet("cassback check-store", flag.ContinueOnError)
	fs.IntVar(&o.Rounds, "rounds", storecheck.DefaultRounds, "how many times each conditional-write race is run (more rounds, more confidence)")
	fs.IntVar(&o.Racers, "racers", storecheck.DefaultRacers, "conditional writes that race for one key in each round")
	return &ffcli.Command{
		Name:       "check-store",
		ShortUsage: "cassback [global options] check-store [--rounds N] [--racers N]",
		ShortHelp:  "check that the store gives the guarantees purge relies on",
		LongHelp: `Checks that the store the global options name (a folder or a bucket; it may
be empty, and need not be a cassback store yet) gives what cassback's
garbage collector relies on: conditional create (If-None-Match) and
replace (If-Match); exactly one winner when --racers writers race to
create one key or to replace one ETag, --rounds times each; read-after-
write, list-after-write and delete visibility; exact ranged reads; and a
modification time on every object. It writes only under a scratch prefix
check-store/<random>/ and removes it at the end, also when interrupted.

Prints one line per check (pass, FAIL or not supported) and a verdict:
whether purge may run lock-free on this store or needs --exclusive. A
store without conditional writes is "not supported", which is not a
failure. On a cassback store it also prints what the store's config
recorded when the store was created, which is what every cassback
process follows; a config that records conditional writes the store no
longer gives is a failure. Exits 1 if any check fails.`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("check-store takes no arguments")
			}
			if o.Rounds < 1 {
				return usagef("--rounds %d: want at least 1", o.Rounds)
			}
			if o.Racers < 2 {
				return usagef("--racers %d: want at least 2", o.Racers)
			}
			if err := g.setup(); err != nil {
				return err
			}
			if g.endpoint == "survey" {
				return usagef("check-store checks a real store; the survey endpoint keeps no data")
			}
			// Not g.repo: the location need not hold a store, and create
			// false makes nothing (a missing folder is an error).
			st, err := g.store(ctx, false)
			if err != nil {
				return err
			}
			start := time.Now()
			rep, err := storecheck.Run(ctx, st, o)
			printCheckStore(ctx, g, st, rep, time.Since(start))
			if err != nil {
				return err
			}
			var failed []string
			for _, r := range rep.Results {
				if r.Status == storecheck.Fail {
					failed = append(failed, r.Check)
				}
			}
			if cfg, err := index.LoadConfig(ctx, st); err == nil && cfg.Conditional && !rep.LockFree() {
				failed = append(failed, "config records conditional writes the store no longer gives")
			}
			if len(failed) > 0 {
				return fmt.Errorf("%w: %s", errCheckFailed, strings.Join(failed, ", "))
			}
			return nil
		},
	}
}

func printCheckStore(ctx context.Context, g *globals, st remote.Store, rep storecheck.Report, dur time.Duration) {
	w := g.stdout
	fmt.Fprintf(w, "Checking %s under %s\n", g.location(), rep.Prefix)
	for _, r := range rep.Results {
		fmt.Fprintf(w, "%-20s %-13s %s\n", r.Check, r.Status, r.Detail)
	}
	for _, k := range rep.Leftover {
		fmt.Fprintf(w, "Left behind (delete it by hand): %s\n", k)
	}
	fmt.Fprintf(w, "Checked in %.1fs\n", dur.Seconds())
	if cfg, err := index.LoadConfig(ctx, st); err == nil {
		with := map[bool]string{true: "with", false: "without"}[cfg.Conditional]
		fmt.Fprintf(w, "Store config: created %s conditional writes; every cassback process follows it\n", with)
	}
	fmt.Fprintf(w, "Verdict: %s\n", rep.Verdict())
}
