package bench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// BenchmarkPackPadding backs the generated node up to a plain store and
// to one named as an encrypted store is (keyed chunk IDs; its writers pad
// every pack to its Padmé size and spread chunks over two open packs),
// and reports what the padding costs: padding bytes over the packs'
// unpadded bytes (pad-%), and the keyed store's pack bytes over the plain
// one's (store-%), which counts the different packing too.
func BenchmarkPackPadding(b *testing.B) {
	genNode(b)
	ctx := context.Background()
	for b.Loop() {
		var bytes [2]int64
		var pad, unpadded int64
		var packs [2]int
		for i, nm := range []chunk.Namer{{}, chunk.KeyedNamer(chunk.DeriveKey("cassback 2026 chunk-id v1", []byte("bench")))} {
			r := newRepo(b, filepath.Join(b.TempDir(), "store"), true)
			r.Config.Chunker.Namer = nm
			if _, err := r.Backup(ctx, cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench"}); err != nil {
				b.Fatal(err)
			}
			err := r.Store.List(ctx, "packs/", func(info remote.Info) error {
				bytes[i] += info.Size
				packs[i]++
				if !nm.Keyed() {
					return nil
				}
				entries, size, err := pack.ReadHeader(ctx, r.Store, info.Key)
				if err != nil {
					return err
				}
				u := int64(len(entries)+1)*pack.EntrySize + pack.TrailerSize
				for _, e := range entries {
					u += int64(e.Len)
				}
				unpadded += u
				pad += size - u
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(100*float64(pad)/float64(unpadded), "pad-%")
		b.ReportMetric(100*float64(bytes[1]-bytes[0])/float64(bytes[0]), "store-%")
		b.ReportMetric(float64(packs[0]), "packs-plain")
		b.ReportMetric(float64(packs[1]), "packs-keyed")
	}
}
