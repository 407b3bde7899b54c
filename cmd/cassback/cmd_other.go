package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3/ffcli"
)

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
