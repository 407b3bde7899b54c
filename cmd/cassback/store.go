package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// store opens the object store the global options name. create is true
// for backup, the only command that may create a store.
func (g *globals) store(ctx context.Context, create bool) (remote.Store, error) {
	switch g.endpoint {
	case "s3":
		return g.openS3(ctx, create)
	case "survey":
		return g.openSurvey(create)
	}
	return g.openLocal(create)
}

func (g *globals) openLocal(create bool) (remote.Store, error) {
	if g.backupBase == "" {
		return nil, usagef("--backup-base is required with --endpoint local")
	}
	fi, err := os.Stat(g.backupBase)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("--backup-base %s: not a directory", g.backupBase)
	case errors.Is(err, os.ErrNotExist) && create:
		if err := os.MkdirAll(g.backupBase, 0o755); err != nil {
			return nil, fmt.Errorf("--backup-base %s: %w", g.backupBase, err)
		}
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("--backup-base %s: no such directory", g.backupBase)
	case err != nil:
		return nil, fmt.Errorf("--backup-base %s: %w", g.backupBase, err)
	}
	return local.Open(g.backupBase)
}
