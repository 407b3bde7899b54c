package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func validateCmd(g *globals, opts []ff.Option) *ffcli.Command {
	fs := flag.NewFlagSet("cassback validate", flag.ContinueOnError)
	fs.Bool("checksum", false, "also read every chunk and check its BLAKE3")
	fs.String("host", "", "host whose backups to validate")
	return &ffcli.Command{
		Name: "validate", ShortUsage: "cassback [global options] validate [BACKUP_NAME] [--checksum] [--host H]",
		ShortHelp: "check that backups are complete and intact (not available in this version)",
		FlagSet:   fs, Options: opts,
		Exec: func(context.Context, []string) error {
			return errors.New("validate is not available in this version")
		},
	}
}

func purgeCmd(g *globals, opts []ff.Option) *ffcli.Command {
	fs := flag.NewFlagSet("cassback purge", flag.ContinueOnError)
	fs.Int("keep-days", 0, "keep backups of the last N days")
	fs.String("purge-before", "", "purge backups before this time")
	fs.Bool("dry-run", false, "print what would be removed")
	fs.String("host", "", "host whose backups to purge")
	return &ffcli.Command{
		Name: "purge", ShortUsage: "cassback [global options] purge [KEYSPACE] (--keep-days N | --purge-before DATE) [--dry-run] [--host H]",
		ShortHelp: "remove old backups and the data only they use (not available in this version)",
		FlagSet:   fs, Options: opts,
		Exec: func(context.Context, []string) error {
			return errors.New("purge is not available in this version")
		},
	}
}

func helpCmd(g *globals, root **ffcli.Command, cmds []*ffcli.Command) *ffcli.Command {
	fs := flag.NewFlagSet("cassback help", flag.ContinueOnError)
	return &ffcli.Command{
		Name: "help", ShortUsage: "cassback help [command]", ShortHelp: "show help for cassback or a command",
		FlagSet: fs,
		Exec: func(_ context.Context, args []string) error {
			if len(args) == 0 {
				fmt.Fprintln(g.stdout, ffcli.DefaultUsageFunc(*root))
				return nil
			}
			for _, c := range cmds {
				if c.Name == args[0] {
					fmt.Fprintln(g.stdout, ffcli.DefaultUsageFunc(c))
					return nil
				}
			}
			return usagef("help: unknown command %q", args[0])
		},
	}
}
