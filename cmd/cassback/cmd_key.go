package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback/remote/crypt/keyslot"
)

func keyCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var nk keyFlags
	fs := flag.NewFlagSet("cassback key", flag.ContinueOnError)
	fs.StringVar(&nk.keyFile, "new-key-file", "", "key add: the key file of the new slot")
	fs.StringVar(&nk.passphrase, "new-passphrase", "", "key add: the passphrase of the new slot; give it as CASSBACK_NEW_PASSPHRASE or in an @file, never on the command line")
	fs.StringVar(&nk.kmsKeyID, "new-kms-key-id", "", "key add: the AWS KMS key of the new slot (--kms-endpoint and --kms-region apply)")
	return &ffcli.Command{
		Name:       "key",
		ShortUsage: "cassback [global options] key add|list|remove ID|generate FILE [options]",
		ShortHelp:  "manage an encrypted store's key slots",
		LongHelp: `An encrypted store's master key is kept wrapped by key slots, each opened
by one key source: a key file, a passphrase or an AWS KMS key. The global
key options (--key-file, CASSBACK_PASSPHRASE, --kms-key-id) open the store;
no data is re-encrypted by these commands.

  key add       add a slot for the source given by --new-key-file,
                CASSBACK_NEW_PASSPHRASE or --new-kms-key-id
  key list      list the slots (id, kind, created, KMS key)
  key remove ID remove a slot; removing the last one is refused
  key generate FILE
                write 32 random bytes to a new file (mode 0600), for --key-file`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) == 0 {
				return usagef("key: want add, list, remove ID or generate FILE")
			}
			if args[0] == "generate" {
				if len(args) != 2 {
					return usagef("key generate: want one FILE")
				}
				return generateKeyFile(args[1])
			}
			if err := g.setup(); err != nil {
				return err
			}
			switch args[0] {
			case "add", "list":
				if len(args) != 1 {
					return usagef("key %s takes no arguments, got %q", args[0], args[1])
				}
			case "remove":
				if len(args) != 2 {
					return usagef("key remove: want one slot ID (see key list)")
				}
			default:
				return usagef("key %q: want add, list, remove ID or generate FILE", args[0])
			}
			var newSrc keyslot.Source
			if args[0] == "add" {
				nk.kmsEndpoint, nk.kmsRegion = g.keys.kmsEndpoint, g.keys.kmsRegion
				srcs, err := g.keySources(ctx, nk)
				if err != nil {
					return err
				}
				if len(srcs) != 1 {
					return usagef("key add: give exactly one of --new-key-file, CASSBACK_NEW_PASSPHRASE, --new-kms-key-id (got %d)", len(srcs))
				}
				newSrc = srcs[0]
			}
			r, err := g.repo(ctx, false)
			if err != nil {
				return err
			}
			switch args[0] {
			case "add":
				slot, err := r.AddKey(ctx, newSrc)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Added key slot %s (%s)\n", slot.ID, slot.Kind)
			case "list":
				slots, err := r.KeySlotList(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tCREATED\tKMS KEY\tSTATE")
				for _, s := range slots {
					state := "ok"
					if s.Err != nil {
						state = "unreadable: " + s.Err.Error()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Kind, s.Created.UTC().Format(time.RFC3339), firstOf(s.KMSKeyID, "-"), state)
				}
				return tw.Flush()
			case "remove":
				if err := r.RemoveKey(ctx, args[1]); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Removed key slot %s\n", args[1])
			}
			return nil
		},
	}
}

// generateKeyFile writes 32 random bytes to a new file only its owner reads.
func generateKeyFile(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return usagef("key generate: %s exists already (never overwritten: it may be a store's key)", path)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	clear(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
