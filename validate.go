package cassback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
)

// ValidateOptions chooses what validate checks.
type ValidateOptions struct {
	Name     string // one backup; else every backup of Host, or of every host
	Host     string
	Checksum bool // read every referenced chunk, every file and its Cassandra digest
	Threads  int  // concurrent reads; default 8
}

// Problem is one thing wrong, named down to the file when it can be.
type Problem struct {
	Backup   string
	Keyspace string
	Table    string
	File     string // path below the data directory, "" for the whole backup
	Kind     string // "missing" or "corrupt"
	What     string
}

// ValidateReport is what validate found.
type ValidateReport struct {
	Backups       []string // validated
	Files         int
	Chunks        int // distinct chunks referenced
	Packs         int // packs whose headers were read
	BytesRead     int64
	Problems      []Problem
	Orphans       []chunk.ID // stored packs no index file names
	BadIndex      []string   // unreadable index files, with why
	StaleSessions []string
	OpenRuns      []string // condemned sets waiting to be swept
	Duration      time.Duration
}

// OK reports whether nothing is missing or corrupt.
func (r ValidateReport) OK() bool { return len(r.Problems) == 0 && len(r.BadIndex) == 0 }

type fileRef struct {
	backup, ks, table string
	rec               *manifest.File
	digest            *manifest.File // the SSTable's Digest component, for Data.db
}

// Validate checks backups: every manifest decodes; every referenced chunk
// resolves to a stored pack of the indexed size; the header of every such
// pack agrees with the index; with Checksum, every chunk's BLAKE3, every
// file's BLAKE3 and each Data.db's Cassandra digest. It also lists orphan
// packs, stale sessions and open condemned sets. It never changes the store.
func (r *Repo) Validate(ctx context.Context, opts ValidateOptions) (ValidateReport, error) {
	start := time.Now()
	var rep ValidateReport
	if opts.Threads <= 0 {
		opts.Threads = 8
	}
	var names []string
	if opts.Name != "" {
		names = []string{opts.Name}
	} else {
		hosts := []string{opts.Host}
		if opts.Host == "" {
			var err error
			if hosts, err = manifest.Hosts(ctx, r.Store); err != nil {
				return rep, err
			}
		}
		for _, h := range hosts {
			kss, err := manifest.Keyspaces(ctx, r.Store, h)
			if err != nil {
				return rep, err
			}
			for _, ks := range kss {
				if err := manifest.List(ctx, r.Store, h, ks, "", func(n string) error {
					names = append(names, n)
					return nil
				}); err != nil {
					return rep, err
				}
			}
		}
	}
	var files []fileRef
	for _, n := range names {
		m, err := manifest.Get(ctx, r.Store, n)
		if err != nil {
			if opts.Name != "" && errors.Is(err, manifest.ErrNoBackup) {
				return rep, err
			}
			_, ks, _, _ := manifest.ParseBackupName(n)
			rep.Problems = append(rep.Problems, Problem{Backup: n, Keyspace: ks, Kind: "corrupt", What: "manifest unreadable: " + err.Error()})
			continue
		}
		rep.Backups = append(rep.Backups, n)
		for ti := range m.Tables {
			t := &m.Tables[ti]
			digests := map[string]*manifest.File{}
			for fi := range t.Files {
				f := &t.Files[fi]
				if p, err := sstable.ParsePath(f.Path); err == nil && strings.HasPrefix(p.Component, "Digest.") {
					digests[path.Dir(f.Path)+"/"+p.Prefix] = f
				}
			}
			for fi := range t.Files {
				f := &t.Files[fi]
				if f.Unstored {
					continue // recorded by --ignore-existing: nothing stored to check
				}
				fr := fileRef{backup: n, ks: m.Keyspace, table: t.Name, rec: f}
				if p, err := sstable.ParsePath(f.Path); err == nil && p.Component == "Data.db" {
					fr.digest = digests[path.Dir(f.Path)+"/"+p.Prefix]
				}
				files = append(files, fr)
			}
		}
	}
	rep.Files = len(files)

	cat, err := gc.LoadCatalog(ctx, r.Store)
	if err != nil {
		return rep, err
	}
	for k, e := range cat.BadIndex {
		rep.BadIndex = append(rep.BadIndex, k+": "+e.Error())
	}
	slices.Sort(rep.BadIndex)
	rep.Orphans = cat.Orphans
	now, err := gc.StoreNow(ctx, r.Store)
	if err == nil {
		if ss, err := gc.ListSessions(ctx, r.Store, now, r.GC.WithDefaults().Lease); err == nil {
			for _, s := range ss {
				if s.Stale || s.State == "revoked" {
					rep.StaleSessions = append(rep.StaleSessions, fmt.Sprintf("%s (%s, last renewed %s)", s.Key, s.Kind, s.Renewed.UTC().Format(time.RFC3339)))
				}
			}
		}
	}
	if runs, err := gc.ListCondemned(ctx, r.Store); err == nil {
		for _, run := range runs {
			rep.OpenRuns = append(rep.OpenRuns, fmt.Sprintf("%s (%d packs, %d bytes, condemned %s)", run.ID, len(run.Packs), run.Bytes, run.Time.UTC().Format(time.RFC3339)))
		}
	}

	// Where every referenced chunk is: any stored copy of the indexed size.
	copies := map[chunk.ID][]*gc.PackState{}
	for _, p := range cat.Packs {
		for _, e := range p.Entries {
			copies[e.ID] = append(copies[e.ID], p)
		}
	}
	problem := func(f fileRef, kind, what string) {
		rep.Problems = append(rep.Problems, Problem{Backup: f.backup, Keyspace: f.ks, Table: f.table, File: f.rec.Path, Kind: kind, What: what})
	}
	usedPacks := map[chunk.ID][]int{} // pack -> files using it
	good := index.New()               // the copies validate reads from
	seen := map[chunk.ID]bool{}
	for i, f := range files {
		var bad []string
		for _, c := range f.rec.Chunks {
			seen[c.ID] = true
			cs := copies[c.ID]
			var ok *gc.PackState
			var why string
			for _, p := range cs {
				switch {
				case !p.Stored:
					why = fmt.Sprintf("chunk %s: its pack %s is missing", c.ID, p.ID)
				case p.StoreSize != p.Size:
					why = fmt.Sprintf("chunk %s: its pack %s has %d bytes, the index says %d (truncated?)", c.ID, p.ID, p.StoreSize, p.Size)
				default:
					ok = p
				}
				if ok != nil {
					break
				}
			}
			if len(cs) == 0 {
				why = fmt.Sprintf("chunk %s is in no index file", c.ID)
			}
			if ok == nil {
				bad = append(bad, why)
				continue
			}
			if !slices.Contains(usedPacks[ok.ID], i) {
				usedPacks[ok.ID] = append(usedPacks[ok.ID], i)
			}
			if good.PackSize(ok.ID) < 0 {
				good.Add(index.PackRecord{ID: ok.ID, Size: ok.Size, Entries: ok.Entries})
			}
		}
		if len(bad) > 0 {
			problem(f, "missing", fmt.Sprintf("%d of %d chunks unavailable; first: %s", len(bad), len(f.rec.Chunks), bad[0]))
		}
	}
	rep.Chunks = len(seen)

	// Pack headers agree with the index: two ranged reads per pack.
	packIDs := make([]chunk.ID, 0, len(usedPacks))
	for id := range usedPacks {
		packIDs = append(packIDs, id)
	}
	var mu sync.Mutex
	badPack := map[chunk.ID]string{}
	parallel(ctx, len(packIDs), opts.Threads, func(i int) {
		p := cat.Packs[packIDs[i]]
		entries, _, err := pack.ReadHeader(ctx, r.Store, pack.Key(p.ID))
		why := ""
		switch {
		case err != nil:
			why = fmt.Sprintf("pack %s header unreadable: %v", p.ID, err)
		case !slices.Equal(entries, p.Entries):
			why = fmt.Sprintf("pack %s header does not match the index", p.ID)
		}
		mu.Lock()
		defer mu.Unlock()
		rep.Packs++
		if why != "" {
			badPack[p.ID] = why
		}
	})
	for id, why := range badPack {
		for _, fi := range usedPacks[id] {
			problem(files[fi], "corrupt", why)
		}
	}

	if opts.Checksum {
		r.checksumFiles(ctx, files, good, opts.Threads, &rep, problem)
	}
	slices.SortFunc(rep.Problems, func(a, b Problem) int {
		return strings.Compare(a.Backup+"\x00"+a.File+"\x00"+a.What, b.Backup+"\x00"+b.File+"\x00"+b.What)
	})
	rep.Problems = slices.Compact(rep.Problems)
	rep.Duration = time.Since(start)
	return rep, ctx.Err()
}

// checksumFiles reads every file's chunks in order and checks the file's
// BLAKE3 and, for Data.db, its Cassandra digest.
func (r *Repo) checksumFiles(ctx context.Context, files []fileRef, good *index.Index, threads int, rep *ValidateReport, problem func(fileRef, string, string)) {
	var mu sync.Mutex
	parallel(ctx, len(files), max(1, threads/2), func(i int) {
		f := files[i]
		h := chunk.NewHasher()
		var digest []byte
		if f.digest != nil {
			var b strings.Builder
			if err := readFile(ctx, r, good, f.digest, func(p []byte) { b.Write(p) }); err == nil {
				digest = []byte(b.String())
			}
		}
		pr, pw := io.Pipe()
		var derr error
		var wg sync.WaitGroup
		if digest != nil {
			p, _ := sstable.ParsePath(f.rec.Path)
			wg.Add(1)
			go func() {
				defer wg.Done()
				derr = sstable.CheckDigest(p.Version, digest, pr)
				io.Copy(io.Discard, pr)
			}()
		}
		var n int64
		err := readFile(ctx, r, good, f.rec, func(p []byte) {
			h.Write(p)
			n += int64(len(p))
			if digest != nil {
				pw.Write(p)
			}
		})
		pw.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		rep.BytesRead += n
		switch {
		case err != nil:
			problem(f, "corrupt", err.Error())
		case h.Sum() != f.rec.Sum:
			problem(f, "corrupt", "file checksum (BLAKE3) does not match")
		case derr != nil:
			problem(f, "corrupt", "Cassandra digest: "+derr.Error())
		}
	})
}

// readFile streams a backed-up file's bytes in order, fetching a window of
// chunks at a time in parallel.
func readFile(ctx context.Context, r *Repo, idx *index.Index, f *manifest.File, fn func([]byte)) error {
	const window = 8
	for i := 0; i < len(f.Chunks); i += window {
		refs := f.Chunks[i:min(i+window, len(f.Chunks))]
		ids := make([]chunk.ID, len(refs))
		for j, c := range refs {
			ids[j] = c.ID
		}
		got := map[chunk.ID][]byte{}
		var mu sync.Mutex
		err := index.Fetch(ctx, r.Store, idx, ids, index.FetchOptions{Parallel: 4}, func(id chunk.ID, data []byte, err error) error {
			if err != nil {
				return err
			}
			mu.Lock()
			got[id] = append([]byte(nil), data...)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range refs {
			fn(got[c.ID])
		}
	}
	return nil
}

// parallel runs fn(0..n-1) on up to k goroutines.
func parallel(ctx context.Context, n, k int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(k, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}
