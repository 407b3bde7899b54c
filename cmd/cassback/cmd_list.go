package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
)

type listConfig struct {
	all, hosts, json bool
	day, host        string
}

func listCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var c listConfig
	fs := flag.NewFlagSet("cassback list", flag.ContinueOnError)
	fs.BoolVar(&c.all, "all", false, "list every backup of the day, not only the latest")
	fs.StringVar(&c.day, "day", "", "UTC day to list (default: today)")
	fs.StringVar(&c.host, "host", "", "host to list (default: this host's fully qualified name)")
	fs.BoolVar(&c.hosts, "hosts", false, "list every host in the store with its newest backup")
	fs.BoolVar(&c.json, "json", false, "print one JSON document (schema in docs/cli.md)")
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "cassback [global options] list [KEYSPACE] [--all] [--day DATE] [--host H] [--json] | list --hosts [--json]",
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
// backups of a decommissioned node can be found and purged. A host or
// keyspace with no backup left is not counted (cassback.Status).
func listHosts(ctx context.Context, g *globals, c *listConfig, r *cassback.Repo) error {
	hs, err := cassback.Status(ctx, r.Store, cassback.StatusOptions{})
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(g.stdout, listHostsJSON(r.Encrypted(), hs))
	}
	if len(hs) == 0 {
		fmt.Fprintln(g.stdout, "No hosts")
	} else {
		fmt.Fprintf(g.stdout, "%-40s %-10s %s\n", "Host", "Keyspaces", "Newest backup")
	}
	for _, h := range hs {
		fmt.Fprintf(g.stdout, "%-40s %-10d %s\n", h.Host, len(h.Keyspaces), newestKeyspace(h).Backup)
	}
	_, err = fmt.Fprintf(g.stdout, "\nStore %s, encrypted: %s\n", r.Config.ID, encryptedWord(r))
	return err
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
		return listHosts(ctx, g, c, r)
	}
	if c.host == "" {
		c.host = defaultHost()
	}
	if err := checkHost(c.host); err != nil {
		return err
	}
	kss := args
	if len(kss) == 0 {
		if kss, err = manifest.BackedUpKeyspaces(ctx, r.Store, c.host); err != nil {
			return err
		}
	}
	ls, err := listDay(ctx, r.Store, c, kss, when)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(g.stdout, listDoc{jsonHeader: header("list"), Host: c.host, Day: when.Format("2006-01-02"), All: c.all, Keyspaces: ls})
	}
	if len(ls) == 0 {
		fmt.Fprintf(g.stdout, "No backups from %s\n", c.host)
		return nil
	}
	what := "Latest backup"
	if c.all {
		what = "All backups"
	}
	for i, l := range ls {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		fmt.Fprintf(g.stdout, "%s for keyspace %s from %s for %s UTC:\n", what, l.Keyspace, c.host, when.Format("2006-01-02"))
		if len(l.Backups) == 0 {
			fmt.Fprintln(g.stdout, "None")
		}
		for _, n := range l.Backups {
			fmt.Fprintln(g.stdout, n)
		}
	}
	return nil
}

// listDay returns the backups of each keyspace of c.host on the UTC day of
// when: all of them with c.all, else the latest (none if there is none).
// It lists the host's commit markers of the day once, for every keyspace.
func listDay(ctx context.Context, st remote.Store, c *listConfig, kss []string, when time.Time) ([]listKeyspace, error) {
	for _, ks := range kss {
		if !sstable.IsName(ks) {
			return nil, fmt.Errorf("keyspace %.300q: want letters, digits and '_'", ks)
		}
	}
	byKeyspace := map[string][]string{}
	if err := manifest.HostCommits(ctx, st, c.host, when.Format("2006_01_02"), func(o manifest.Object) error {
		_, ks, _, _ := manifest.ParseBackupName(o.Name)
		byKeyspace[ks] = append(byKeyspace[ks], o.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	ls := make([]listKeyspace, 0, len(kss))
	for _, ks := range kss {
		names := append([]string{}, byKeyspace[ks]...)
		if !c.all && len(names) > 0 {
			names = names[len(names)-1:]
		}
		ls = append(ls, listKeyspace{Keyspace: ks, Backups: names})
	}
	return ls, nil
}
