package survey

import (
	"testing"
	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

func TestDbg(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := t.Context()
	cfg, _ := index.NewConfig()
	mem := remotetest.NewMemory()
	for _, st := range []remote.Store{s, mem} {
	w, _ := index.NewWriter(ctx, st, index.New(), cfg, index.WriterOptions{Host: "h", PackSize: 1 << 20})
	p := w.NewPacker()
	for i := range 40 {
		d := remotetest.Data(uint64(i), 100_000+i)
		p.Add(ctx, chunk.Sum(d), d)
	}
	p.Flush(ctx)
	w.Sync(ctx)
	st.List(ctx, "packs/", func(i remote.Info) error {
		ss, _ := st.Stat(ctx, i.Key)
		t.Logf("%s list %d stat %d", i.Key, i.Size, ss.Size)
		return nil
	})
	}
}
