package manifest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// Removing several backups of a commit is one step: removing all of them
// deletes the marker and writes none, removing some writes one marker of
// the others; either way before the old marker goes, and the manifests go
// last.
func TestDeleteSeveralOfACommit(t *testing.T) {
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	dir := "commits/n1/2026_11_26T01_00_00_000000/"
	kss := []string{"a", "b", "c", "d", "e", "f"}
	entry := func(cs []Commit, i int) string { return kss[i] + "-" + cs[i].Hash.String() }
	marker := func(cs []Commit, is ...int) string {
		var es []string
		for _, i := range is {
			es = append(es, entry(cs, i))
		}
		return dir + strings.Join(es, ".")
	}
	for _, tc := range []struct {
		name string
		gone []int // indexes of kss removed, in the order given
		want func(cs []Commit) []string
	}{
		{"all", []int{5, 0, 1, 2, 3, 4}, func(cs []Commit) []string {
			return []string{"delete " + marker(cs, 0, 1, 2, 3, 4, 5)}
		}},
		{"half", []int{0, 2, 4}, func(cs []Commit) []string {
			return []string{"put " + marker(cs, 1, 3, 5), "delete " + marker(cs, 0, 1, 2, 3, 4, 5)}
		}},
		{"one", []int{3}, func(cs []Commit) []string {
			return []string{"put " + marker(cs, 0, 1, 2, 4, 5), "delete " + marker(cs, 0, 1, 2, 3, 4, 5)}
		}},
		{"twice named", []int{1, 1, 2}, func(cs []Commit) []string {
			return []string{"put " + marker(cs, 0, 3, 4, 5), "delete " + marker(cs, 0, 1, 2, 3, 4, 5)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			st := &ops{Store: openLocal(t)}
			cs := commitOf(t, st, "n1", at, kss...)
			var names, gone []string
			for _, i := range tc.gone {
				names = append(names, cs[i].Name)
				if !slices.Contains(gone, cs[i].Name) {
					gone = append(gone, cs[i].Name)
				}
			}
			st.log = nil
			if err := Delete(ctx, st, names...); err != nil {
				t.Fatal(err)
			}
			want := tc.want(cs)
			for _, n := range gone {
				mk, _ := Key(n)
				want = append(want, "delete "+mk)
			}
			if !slices.Equal(st.log, want) {
				t.Errorf("Delete(%v) did\n%s\nwant\n%s", names, strings.Join(st.log, "\n"), strings.Join(want, "\n"))
			}
			checkRemoved(t, st, cs, gone)
		})
	}
}

// checkRemoved checks that the backups gone are neither committed nor
// stored, and the others of cs are committed with their hashes.
func checkRemoved(t *testing.T, st remote.Store, cs []Commit, gone []string) {
	t.Helper()
	for _, c := range cs {
		h, ok, err := Committed(t.Context(), st, c.Name)
		if slices.Contains(gone, c.Name) {
			if ok || err != nil {
				t.Errorf("removed %s: committed %v, %v", c.Name, ok, err)
			}
			if err := Exists(t.Context(), st, c.Name); !errors.Is(err, ErrNoBackup) {
				t.Errorf("removed %s: its manifest: %v", c.Name, err)
			}
			continue
		}
		if !ok || err != nil || h != c.Hash {
			t.Errorf("kept %s: committed %v with %s, %v; want committed with %s", c.Name, ok, h, err, c.Hash)
		}
	}
}

// Delete groups the names it is given by commit, whatever their order:
// one LIST, and one marker write at most, a commit.
func TestDeleteGroupsByCommit(t *testing.T) {
	ctx := t.Context()
	st := &ops{Store: openLocal(t)}
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	c1 := commitOf(t, st, "n1", at, "a", "b", "c")
	c2 := commitOf(t, st, "n1", at.Add(time.Second), "a", "b", "c")
	c3 := commitOf(t, st, "n2", at, "a", "b")
	names := []string{c1[0].Name, c2[0].Name, c3[0].Name, c1[1].Name, c2[1].Name, c3[1].Name, c1[2].Name}
	groups, err := ByCommit(names)
	want := [][]string{{c1[0].Name, c1[1].Name, c1[2].Name}, {c2[0].Name, c2[1].Name}, {c3[0].Name, c3[1].Name}}
	if err != nil || !slices.EqualFunc(groups, want, slices.Equal) {
		t.Errorf("ByCommit = %v, %v; want %v", groups, err, want)
	}
	st.log = nil
	if err := Delete(ctx, st, names...); err != nil {
		t.Fatal(err)
	}
	var puts, dels int
	for _, op := range st.log {
		switch {
		case strings.HasPrefix(op, "put commits/"):
			puts++
		case strings.HasPrefix(op, "delete commits/"):
			dels++
		}
	}
	if puts != 1 || dels != 3 {
		t.Errorf("Delete of three commits' backups, one of them partly: %d marker writes and %d deletions, want 1 and 3:\n%s", puts, dels, strings.Join(st.log, "\n"))
	}
	all := slices.Concat(c1, c2, c3)
	checkRemoved(t, st, all, names)
	if _, err := ByCommit([]string{c1[0].Name, "bad"}); err == nil {
		t.Error("ByCommit of a bad name: no error")
	}
	if err := Delete(ctx, st, c2[2].Name, "bad"); err == nil {
		t.Error("Delete of a bad name: no error")
	}
	if _, ok, _ := Committed(ctx, st, c2[2].Name); !ok {
		t.Error("Delete of a bad name removed the good one named with it")
	}
}

// A removal stopped at any request — refused, or done with its reply lost
// — leaves every listed marker naming manifest objects that are stored
// and are the objects it names, every backup not being removed committed,
// and a store where the same removal run again finishes: on a commit
// split over several markers, on one with a marker left by an earlier
// stopped removal, removing all of it or a part spanning markers, and
// removing backups of two commits at once.
func TestDeleteCommitStopped(t *testing.T) {
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	host := strings.Repeat("h", 100)
	kss := keyspaces(12, 20)
	for _, tc := range []struct {
		name   string
		prefix int   // of the store's keys: 749 leaves room for 3 entries a marker
		extra  []int // a marker of these written too, as an earlier stopped removal leaves
		gone   []int // of the commit's backups; of the two commits' when two
		two    bool  // a second commit of the keyspaces, a second later
	}{
		{"one marker, all", 0, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false},
		{"one marker, some", 0, nil, []int{0, 3, 4, 11}, false},
		{"split, all", 749, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false},
		{"split, across markers", 749, nil, []int{2, 3, 4, 5, 9}, false},
		{"left over, all", 0, []int{1, 2, 5, 7}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false},
		{"left over, some", 0, []int{1, 2, 5, 7}, []int{2, 3, 7}, false},
		{"split and left over", 749, []int{1, 2, 5}, []int{0, 2, 4, 6, 8}, false},
		{"two commits", 0, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 23, 16}, true},
		{"two commits, split", 749, nil, []int{14, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 23}, true},
	} {
		for mname, mode := range map[string]remotetest.Mode{"refused": remotetest.Refused, "lost reply": remotetest.LostReply} {
			t.Run(tc.name+"/"+mname, func(t *testing.T) {
				stops := 0
				for n := 0; ; n++ {
					ctx := t.Context()
					base := remotetest.NewMemory()
					var st remote.Store = base
					if tc.prefix > 0 {
						st = prefixed{base, strings.Repeat("p", tc.prefix) + "/"}
					}
					cs := commitOf(t, st, host, at, kss...)
					if tc.two {
						cs = append(cs, commitOf(t, st, host, at.Add(time.Second), kss...)...)
					}
					if tc.extra != nil {
						var es []CommitEntry
						for _, i := range tc.extra {
							es = append(es, CommitEntry{kss[i], cs[i].Hash})
						}
						if err := PutCommit(ctx, st, host, at, es, ""); err != nil {
							t.Fatal(err)
						}
					}
					var gone []string
					for _, i := range tc.gone {
						gone = append(gone, cs[i].Name)
					}
					f := remotetest.NewFaulty(st)
					f.SetMode(mode)
					f.FailAfter(remotetest.OpAny, n, nil)
					var fst remote.Store = f
					if tc.prefix > 0 {
						fst = prefixed{f, strings.Repeat("p", tc.prefix) + "/"}
					}
					err := Delete(ctx, fst, gone...)
					if err == nil {
						if n == 0 {
							t.Fatal("Delete made no request")
						}
						checkRemoved(t, st, cs, gone)
						break
					}
					stops++
					log := f.Log()
					stopped := log[len(log)-1]
					checkListed(t, st, fmt.Sprintf("stopped at %s %s", stopped.Op, stopped.Key))
					for _, c := range cs {
						if slices.Contains(gone, c.Name) {
							continue
						}
						if h, ok, err := Committed(ctx, st, c.Name); !ok || err != nil || h != c.Hash {
							t.Errorf("stopped at %s %s: kept %s: committed %v with %s, %v", stopped.Op, stopped.Key, c.Name, ok, h, err)
						}
					}
					if err := Delete(ctx, st, gone...); err != nil {
						t.Fatalf("stopped at %s %s: run again: %v", stopped.Op, stopped.Key, err)
					}
					checkRemoved(t, st, cs, gone)
				}
				if stops < 2+len(tc.gone) {
					t.Errorf("stopped at %d requests; want at least a LIST, a marker DELETE and %d manifest DELETEs", stops, len(tc.gone))
				}
			})
		}
	}
}

// checkListed checks that every backup a listed marker names has its
// manifest stored, the object the marker names.
func checkListed(t *testing.T, st remote.Store, what string) {
	t.Helper()
	if err := Commits(t.Context(), st, func(o Object) error {
		if _, err := CommittedHeader(t.Context(), st, Commit{Name: o.Name, Hash: o.Hash}); err != nil {
			t.Errorf("%s: marker %s names %s: %v", what, o.Key, o.Name, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
