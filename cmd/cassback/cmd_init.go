package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
)

func initCmd(g *globals, opts []ff.Option) *ffcli.Command {
	fs := flag.NewFlagSet("cassback init", flag.ContinueOnError)
	return &ffcli.Command{
		Name:       "init",
		ShortUsage: "cassback [global options] init",
		ShortHelp:  "create a store (encrypted when a key is given)",
		LongHelp: `Creates a store in an empty folder or bucket (the first backup does too).
With a key source (--key-file, CASSBACK_PASSPHRASE, --kms-key-id; several
may be given) the store is encrypted: a random master key seals every
object, and a key slot of it is written for each source. Every later
command on the store needs one of its key sources. Without one, the store
is in plaintext. The choice is the store's for good.`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("init takes no arguments, got %q", args[0])
			}
			if err := g.setup(); err != nil {
				return err
			}
			st, err := g.store(ctx, true)
			if err != nil {
				return err
			}
			switch r, err := cassback.Open(ctx, st, cassback.Options{ReadOnly: true}); {
			case err == nil:
				return fmt.Errorf("%s is a cassback store already (id %s, encrypted: %s)", g.location(), r.Config.ID, encryptedWord(r))
			case errors.Is(err, cassback.ErrNeedKey):
				return fmt.Errorf("%s is a cassback store already (encrypted)", g.location())
			case !cassback.IsNotStore(err):
				return err
			}
			r, err := g.repo(ctx, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Created store %s at %s (encrypted: %s)\n", r.Config.ID, g.location(), encryptedWord(r))
			return nil
		},
	}
}
