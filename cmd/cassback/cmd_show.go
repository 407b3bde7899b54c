package main

import (
	"context"
	"flag"
	"fmt"
	"path"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback/manifest"
)

func showCmd(g *globals, opts []ff.Option) *ffcli.Command {
	fs := flag.NewFlagSet("cassback show", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON document (schema in docs/cli.md)")
	return &ffcli.Command{
		Name:       "show",
		ShortUsage: "cassback [global options] show BACKUP_NAME [--json]",
		ShortHelp:  "show the contents of a backup",
		LongHelp:   "Shows a backup's keyspace, host, time, total size and every file of every table.",
		FlagSet:    fs,
		Options:    opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("show takes one backup name")
			}
			if _, _, _, err := manifest.ParseBackupName(args[0]); err != nil {
				return usagef("%v", err)
			}
			if err := g.setup(); err != nil {
				return err
			}
			r, err := g.repo(ctx, false)
			if err != nil {
				return err
			}
			m, err := manifest.Get(ctx, r.Store, args[0], r.Chunks())
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(g.stdout, showJSON(m))
			}
			printManifest(g, m)
			return nil
		},
	}
}

// printManifest prints a manifest in the original cassback's show format.
func printManifest(g *globals, m *manifest.Manifest) {
	w := g.stdout
	var total int64
	for _, t := range m.Tables {
		for _, f := range t.Files {
			total += f.Size
		}
	}
	fmt.Fprintf(w, "Backup: %s\n\n", m.Name)
	fmt.Fprintf(w, "Keyspace: %s:\n", m.Keyspace)
	fmt.Fprintf(w, "Host: %s:\n", m.Host)
	fmt.Fprintf(w, "Timestamp: %s:\n", m.Time.UTC().Format("2006-01-02 15:04:05.000000"))
	fmt.Fprintf(w, "Size: %d / %s\n", total, human(total))
	for _, t := range m.Tables {
		fmt.Fprintf(w, "\nColumn Family: %s\n", t.Name)
		for _, f := range t.Files {
			fmt.Fprintf(w, "\t%s %d/%s\n", path.Base(f.Path), f.Size, human(f.Size))
		}
	}
}
