package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
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
			m, err := manifest.GetHeader(ctx, r.Store, args[0])
			if err != nil {
				return err
			}
			// Buffered, and written only once every tree read well, unless
			// the output outgrows the buffer.
			w := bufio.NewWriterSize(g.stdout, 64<<10)
			if *asJSON {
				err = writeShowJSON(ctx, w, m, r.Chunks())
			} else {
				err = printManifest(ctx, w, m, r.Chunks())
			}
			if err != nil {
				return err
			}
			return w.Flush()
		},
	}
}

// printManifest prints a manifest from manifest.GetHeader in the original
// cassback's show format, reading its tables' files from src a batch of
// leaves at a time, so a manifest of any size prints.
func printManifest(ctx context.Context, w io.Writer, m *manifest.Manifest, src manifest.Chunks) error {
	var total int64
	for _, t := range m.Tables {
		total += t.Bytes
	}
	fmt.Fprintf(w, "Backup: %s\n\n", m.Name)
	fmt.Fprintf(w, "Keyspace: %s:\n", m.Keyspace)
	fmt.Fprintf(w, "Host: %s:\n", m.Host)
	fmt.Fprintf(w, "Timestamp: %s:\n", m.Time.UTC().Format("2006-01-02 15:04:05.000000"))
	fmt.Fprintf(w, "Size: %d / %s\n", total, human(total))
	for i, t := range m.Tables {
		fmt.Fprintf(w, "\nColumn Family: %s\n", t.Name)
		err := m.EachFile(ctx, src, i, nil, func(f *manifest.File) error {
			_, err := fmt.Fprintf(w, "\t%s %d/%s\n", path.Base(f.Path), f.Size, human(f.Size))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
