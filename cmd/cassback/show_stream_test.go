package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/local"
)

// wholeShow is what show printed when it held the whole manifest, in
// text and as JSON: the reference its streamed output must equal.
func wholeShow(t *testing.T, m *manifest.Manifest) (text, js string) {
	t.Helper()
	var b strings.Builder
	var total int64
	for _, tb := range m.Tables {
		for _, f := range tb.Files {
			total += f.Size
		}
	}
	fmt.Fprintf(&b, "Backup: %s\n\n", m.Name)
	fmt.Fprintf(&b, "Keyspace: %s:\n", m.Keyspace)
	fmt.Fprintf(&b, "Host: %s:\n", m.Host)
	fmt.Fprintf(&b, "Timestamp: %s:\n", m.Time.UTC().Format("2006-01-02 15:04:05.000000"))
	fmt.Fprintf(&b, "Size: %d / %s\n", total, human(total))
	for _, tb := range m.Tables {
		fmt.Fprintf(&b, "\nColumn Family: %s\n", tb.Name)
		for _, f := range tb.Files {
			fmt.Fprintf(&b, "\t%s %d/%s\n", path.Base(f.Path), f.Size, human(f.Size))
		}
	}
	d := showDoc{
		jsonHeader: header("show"), Backup: m.Name, Keyspace: m.Keyspace, Host: m.Host, Time: utc(m.Time),
		CassandraVersion: m.CassandraVersion,
	}
	d.Tables = each(m.Tables, func(tb manifest.Table) showTable {
		return showTable{Table: tb.Name, ID: tb.ID, Files: each(tb.Files, func(f manifest.File) showFile {
			d.Files++
			d.Bytes += f.Size
			return showFile{Path: f.Path, Bytes: f.Size, MTime: utc(f.MTime), Unstored: f.Unstored}
		})}
	})
	var jb bytes.Buffer
	if err := writeJSON(&jb, d); err != nil {
		t.Fatal(err)
	}
	return b.String(), jb.String()
}

// TestShowStreams checks that show, which reads a table's files a batch
// of leaves at a time and writes each as it comes, prints byte for byte
// what it printed holding the whole manifest (every backup of a generated
// node, one with an empty table and an unstored file, one without
// tables), and that it shows a manifest whose files take more memory
// than manifest.MaxDecodedMemory, which manifest.Get refuses.
func TestShowStreams(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	backupNode(t, dir, store, "n1", 5)
	ctx := t.Context()
	st, err := local.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*manifest.Manifest
	err = manifest.Objects(ctx, st, func(o manifest.Object) error {
		m, err := manifest.Get(ctx, st, o.Name, cassback.ChunksOf(st))
		ms = append(ms, m)
		return err
	})
	if err != nil || len(ms) == 0 {
		t.Fatalf("%d manifests: %v", len(ms), err)
	}

	// One with an empty table and an unstored file, one without tables.
	odd := *ms[0]
	odd.Time = odd.Time.Add(time.Second)
	odd.Name = manifest.BackupName(odd.Time, odd.Keyspace, odd.Host)
	odd.Tables = append(slices.Clone(odd.Tables), manifest.Table{Name: "zz_empty", ID: strings.Repeat("0", 32), Files: []manifest.File{}})
	tb := &odd.Tables[0]
	tb.Files = slices.Clone(tb.Files)
	tb.Files[0].Unstored, tb.Files[0].Sum, tb.Files[0].Chunks, tb.Files[0].Size = true, chunk.ID{}, nil, 0
	none := *ms[0]
	none.Time = none.Time.Add(2 * time.Second)
	none.Name = manifest.BackupName(none.Time, none.Keyspace, none.Host)
	none.Tables = []manifest.Table{}
	for _, m := range []*manifest.Manifest{&odd, &none} {
		if err := cassback.StoreManifest(ctx, st, m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	for _, m := range ms {
		text, js := wholeShow(t, m)
		for _, c := range []struct {
			flag, want string
		}{{"--json=false", text}, {"--json", js}} {
			out, errs, code := cli(t, filepath.Join(dir, "cache"), "--backup-base", store, "show", m.Name, c.flag)
			if code != 0 || out != c.want {
				t.Errorf("show %s %s: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", m.Name, c.flag, code, errs, out, c.want)
			}
		}
	}

	// A big one: the files of a keyspace and a sixth more than
	// MaxDecodedMemory, as files of 3,000 references to one chunk.
	big := *ms[0]
	big.Time = big.Time.Add(3 * time.Second)
	big.Name = manifest.BackupName(big.Time, big.Keyspace, big.Host)
	big.Tables = slices.Clone(big.Tables)
	tb = &big.Tables[0]
	tb.Files = slices.Clone(tb.Files)
	f0 := tb.Files[0]
	refs := slices.Repeat([]chunk.Ref{{ID: f0.Chunks[0].ID, Len: 1}}, 3000)
	for i := 0; big.MemCost() <= manifest.MaxDecodedMemory*7/6; i++ {
		p := fmt.Sprintf("%s/nb-%d-big-Data.db", path.Dir(f0.Path), 100000+i)
		tb.Files = append(tb.Files, manifest.File{Path: p, Size: int64(len(refs)), Mode: 0o644, MTime: big.Time, Sum: chunk.Sum([]byte(p)), Chunks: refs})
	}
	big.Sort()
	if err := cassback.StoreManifest(ctx, st, &big); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Get(ctx, st, big.Name, cassback.ChunksOf(st)); err == nil {
		t.Fatalf("manifest.Get read a manifest of %d MiB, over MaxDecodedMemory", big.MemCost()>>20)
	}
	text, js := wholeShow(t, &big)
	out, errs, code := cli(t, filepath.Join(dir, "cache"), "--backup-base", store, "show", big.Name)
	if code != 0 || out != text {
		t.Errorf("show of the big manifest: exit %d, stderr %q, %d lines, want %d", code, errs, strings.Count(out, "\n"), strings.Count(text, "\n"))
	}
	out, errs, code = cli(t, filepath.Join(dir, "cache"), "--backup-base", store, "show", big.Name, "--json")
	var d showDoc
	if code != 0 || out != js || json.Unmarshal([]byte(out), &d) != nil || len(d.Tables[0].Files) != len(tb.Files) {
		t.Errorf("show --json of the big manifest: exit %d, stderr %q, %d bytes, want %d", code, errs, len(out), len(js))
	}
}
