package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func repairIndexCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var dryRun bool
	fs := flag.NewFlagSet("cassback repair-index", flag.ContinueOnError)
	fs.BoolVar(&dryRun, "dry-run", false, "print what would be done; change nothing")
	return &ffcli.Command{
		Name:       "repair-index",
		ShortUsage: "cassback [global options] repair-index [--dry-run]",
		ShortHelp:  "index packs that no index file names, and remove damaged index files",
		LongHelp: `Reads the header of every stored pack that no readable index file names
(validate calls such files "unindexed"), writes one index file naming them,
and then removes the index files that cannot be read. Readers and purge
work without it (readers index such packs from their headers, slowly, and
purge deletes nothing while an index file is unreadable); it makes them
fast and lets purge run again. It takes the purge lease.`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("repair-index takes no arguments, got %q", args[0])
			}
			if err := g.setup(); err != nil {
				return err
			}
			r, err := g.repo(ctx, false)
			if err != nil {
				return err
			}
			rep, err := r.RepairIndex(ctx, defaultHost(), dryRun)
			w := g.stdout
			verb := map[bool]string{true: "Would index", false: "Indexed"}[dryRun]
			fmt.Fprintf(w, "%s %d packs that no index file named\n", verb, len(rep.Reindexed))
			if rep.IndexFile != "" {
				fmt.Fprintf(w, "Wrote %s\n", rep.IndexFile)
			}
			for _, k := range rep.Removed {
				fmt.Fprintf(w, "%s damaged index file %s\n", map[bool]string{true: "Would remove", false: "Removed"}[dryRun], k)
			}
			for _, k := range rep.Kept {
				fmt.Fprintf(w, "Kept damaged index file %s: some packs' headers are unreadable too\n", k)
			}
			for id, e := range rep.BadOrphans {
				fmt.Fprintf(w, "Pack %s is in no index file and its header is unreadable: %v\n", id, e)
			}
			return err
		},
	}
}
