package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

type listConfig struct {
	all, hosts bool
	day, host  string
}

func listCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var c listConfig
	fs := flag.NewFlagSet("cassback list", flag.ContinueOnError)
	fs.BoolVar(&c.all, "all", false, "list every backup of the day, not only the latest")
	fs.StringVar(&c.day, "day", "", "UTC day to list (default: today)")
	fs.StringVar(&c.host, "host", "", "host to list (default: this host's fully qualified name)")
	fs.BoolVar(&c.hosts, "hosts", false, "list every host in the store with its newest backup")
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "cassback [global options] list [KEYSPACE] [--all] [--day DATE] [--host H] | list --hosts",
		ShortHelp:  "list backups",
		LongHelp: `Lists the latest backup (or with --all every backup) of a day for one keyspace,
or without a keyspace for every keyspace of the host. --hosts lists every
host in the store with its newest backup.`,
		FlagSet: fs,
		Options: opts,
		Exec:    func(ctx context.Context, args []string) error { return runList(ctx, g, &c, args) },
	}
}

// listHosts prints each host in the store with its newest backup, so the
// backups of a decommissioned node can be found and purged.
func listHosts(ctx context.Context, g *globals, st remote.Store) error {
	hs, err := manifest.Hosts(ctx, st)
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		fmt.Fprintln(g.stdout, "No hosts")
		return nil
	}
	fmt.Fprintf(g.stdout, "%-40s %-10s %s\n", "Host", "Keyspaces", "Newest backup")
	now := time.Now().Add(time.Hour)
	for _, h := range hs {
		kss, err := manifest.Keyspaces(ctx, st, h)
		if err != nil {
			return err
		}
		newest, newestT := "", time.Time{}
		for _, ks := range kss {
			n, err := manifest.Latest(ctx, st, h, ks, now)
			if err != nil {
				return err
			}
			if t, _, _, err := manifest.ParseBackupName(n); err == nil && t.After(newestT) {
				newest, newestT = n, t
			}
		}
		fmt.Fprintf(g.stdout, "%-40s %-10d %s\n", h, len(kss), newest)
	}
	return nil
}

func runList(ctx context.Context, g *globals, c *listConfig, args []string) error {
	if len(args) > 1 {
		return usagef("list takes at most one keyspace, got %d arguments", len(args))
	}
	if err := g.setup(); err != nil {
		return err
	}
	when := time.Now().UTC()
	if c.day != "" {
		t, err := manifest.ParseTime(c.day)
		if err != nil {
			return usagef("--day: %v", err)
		}
		when = t.UTC()
	}
	r, err := g.repo(ctx, false)
	if err != nil {
		return err
	}
	if c.hosts {
		return listHosts(ctx, g, r.Store)
	}
	if c.host == "" {
		c.host = defaultHost()
	}
	if err := checkHost(c.host); err != nil {
		return err
	}
	kss := args
	if len(kss) == 0 {
		if kss, err = manifest.Keyspaces(ctx, r.Store, c.host); err != nil {
			return err
		}
		if len(kss) == 0 {
			fmt.Fprintf(g.stdout, "No backups from %s\n", c.host)
			return nil
		}
	}
	d := when.Format("2006_01_02")
	for i, ks := range kss {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		var names []string
		if err := manifest.List(ctx, r.Store, c.host, ks, d, func(n string) error {
			names = append(names, n)
			return nil
		}); err != nil {
			return err
		}
		what := "Latest backup"
		if c.all {
			what = "All backups"
		} else if len(names) > 0 {
			names = names[len(names)-1:]
		}
		fmt.Fprintf(g.stdout, "%s for keyspace %s from %s for %s UTC:\n", what, ks, c.host, when.Format("2006-01-02"))
		if len(names) == 0 {
			fmt.Fprintln(g.stdout, "None")
		}
		for _, n := range names {
			fmt.Fprintln(g.stdout, n)
		}
	}
	return nil
}
