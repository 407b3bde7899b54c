package manifest

import (
	"context"
	"fmt"

	"github.com/cassback/cassback/remote"
)

// GetObject reads the manifest object stored under a backup name, at most
// maxRoot bytes of it: what Header decodes, and what a cache may keep.
func GetObject(ctx context.Context, st remote.Store, name string) ([]byte, error) {
	return getObject(ctx, st, name)
}

// Header decodes the manifest object obj of backup name as GetHeader does:
// the header and tables without files, checked to hold that backup.
func Header(name string, obj []byte) (*Manifest, error) {
	m, _, err := decodeRoot(obj)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	if m.Name != name {
		return nil, fmt.Errorf("manifest %s: holds backup %s", name, m.Name)
	}
	return m, nil
}
