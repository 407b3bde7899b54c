package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
)

type statusConfig struct {
	staleAfter time.Duration
	json       bool
}

func statusCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var c statusConfig
	fs := flag.NewFlagSet("cassback status", flag.ContinueOnError)
	fs.DurationVar(&c.staleAfter, "stale-after", 24*time.Hour, "flag a host whose newest backup is older than this (and exit 1)")
	fs.BoolVar(&c.json, "json", false, "print one JSON document (schema in docs/cli.md)")
	return &ffcli.Command{
		Name:       "status",
		ShortUsage: "cassback [global options] status [--stale-after D] [--json]",
		ShortHelp:  "show every host's newest backups, their age and live sessions",
		LongHelp: `Prints every host in the store with its newest backup of each keyspace, its
age, the number and size of the files it records (the data a restore of it
writes, not the space it takes in the store), and the host's live sessions
(backup, restore, validate). A host whose newest backup is older than
--stale-after is flagged STALE (a decommissioned or broken node: purge --host
removes its backups) and makes the exit status 1. Hosts and keyspaces with
no backup left are not shown. Ages are by this machine's clock; status
writes nothing to the store.`,
		FlagSet: fs,
		Options: opts,
		Exec:    func(ctx context.Context, args []string) error { return runStatus(ctx, g, &c, args) },
	}
}

func runStatus(ctx context.Context, g *globals, c *statusConfig, args []string) error {
	if len(args) > 0 {
		return usagef("status takes no arguments, got %q", args[0])
	}
	if err := g.setup(); err != nil {
		return err
	}
	if c.staleAfter <= 0 {
		return usagef("--stale-after %v: must be positive", c.staleAfter)
	}
	r, err := g.repo(ctx, false)
	if err != nil {
		return err
	}
	now := time.Now()
	hs, err := cassback.Status(ctx, r.Store, cassback.StatusOptions{Now: now, Sizes: true, Sessions: true, Lease: r.GC.Lease})
	if err != nil {
		return err
	}
	if c.json {
		err = writeJSON(g.stdout, statusJSON(now, r.Encrypted(), c.staleAfter, hs))
	} else {
		err = printStatus(g.stdout, now, c.staleAfter, hs)
		if err == nil {
			_, err = fmt.Fprintf(g.stdout, "Store %s, encrypted: %s\n", r.Config.ID, encryptedWord(r))
		}
	}
	if err != nil {
		return err
	}
	return statusProblems(now, c.staleAfter, hs)
}

// isStale reports whether h's newest backup is older than staleAfter.
func isStale(now time.Time, staleAfter time.Duration, h cassback.HostStatus) bool {
	return now.Sub(h.Newest) > staleAfter
}

// newestKeyspace returns the keyspace of h with the newest backup.
func newestKeyspace(h cassback.HostStatus) cassback.KeyspaceStatus {
	var n cassback.KeyspaceStatus
	for _, k := range h.Keyspaces {
		if n.Backup == "" || k.Time.After(n.Time) {
			n = k
		}
	}
	return n
}

// statusProblems returns the error status exits 1 with: stale hosts, or
// newest backups whose manifests cannot be read.
func statusProblems(now time.Time, staleAfter time.Duration, hs []cassback.HostStatus) error {
	var stale, unreadable []string
	for _, h := range hs {
		if isStale(now, staleAfter, h) {
			stale = append(stale, h.Host)
		}
		for _, k := range h.Keyspaces {
			if k.Unreadable != "" {
				unreadable = append(unreadable, k.Backup)
			}
		}
	}
	var parts []string
	if len(stale) > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d hosts have no backup newer than %s: %s", len(stale), len(hs), limitText(staleAfter), firstFew(stale)))
	}
	if len(unreadable) > 0 {
		parts = append(parts, fmt.Sprintf("%d newest backups unreadable: %s", len(unreadable), firstFew(unreadable)))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("status: %s", strings.Join(parts, "; "))
}

// firstFew joins up to five names, saying how many more there are.
func firstFew(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:5], ", "), len(names)-5)
}

// printStatus prints a block per host: a line for the host, then one per
// keyspace.
func printStatus(out io.Writer, now time.Time, staleAfter time.Duration, hs []cassback.HostStatus) error {
	if len(hs) == 0 {
		_, err := fmt.Fprintln(out, "No hosts")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	stale := 0
	for _, h := range hs {
		flag := ""
		if isStale(now, staleAfter, h) {
			flag, stale = "STALE: ", stale+1
		}
		fmt.Fprintf(w, "%s  %snewest backup %s ago, %s; %s in %d files\n",
			h.Host, flag, age(now.Sub(h.Newest)), sessionsText(h), human(h.Bytes), h.Files)
		for _, k := range h.Keyspaces {
			size := fmt.Sprintf("%s in %d files", human(k.Bytes), k.Files)
			if k.Unreadable != "" {
				size = "unreadable: " + k.Unreadable
			}
			fmt.Fprintf(w, "\t%s\t%s\t%s ago\t%s\n", k.Keyspace, k.Backup, age(now.Sub(k.Time)), size)
		}
	}
	fmt.Fprintf(w, "\n%d hosts, %d stale (newest backup older than %s)\n", len(hs), stale, limitText(staleAfter))
	return w.Flush()
}

// sessionsText names the kinds of h's live sessions.
func sessionsText(h cassback.HostStatus) string {
	if len(h.Sessions) == 0 {
		return "no live session"
	}
	kinds := make([]string, 0, len(h.Sessions))
	for _, s := range h.Sessions {
		kinds = append(kinds, string(s.Kind))
	}
	return "live: " + strings.Join(kinds, ", ")
}

// age formats a duration in two units at most: 45s, 12m30s, 5h3m, 6d2h.
func age(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d%time.Hour/time.Minute), int64(d%time.Minute/time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", s)
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", m, s)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dd%dh", h/24, h%24)
}
