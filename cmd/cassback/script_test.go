package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cassback/cassback/internal/nodegen"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cassback": main,
	})
}

// TestScripts runs the command-line scripts in testdata/script: the real
// binary, real files, the local store.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("CASSBACK_LOG_FILE", "-")
			env.Setenv("CASSBACK_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"gennode":  cmdGennode,
			"sametree": cmdSametree,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// gennode DIR SIZE_BYTES [SEED]: generate a node data directory with
// snapshots, incremental backups and in-flight flushes.
func cmdGennode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: gennode DIR SIZE [SEED]")
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	seed := uint64(1)
	if len(args) > 2 {
		seed, err = strconv.ParseUint(args[2], 10, 64)
		ts.Check(err)
	}
	_, err = nodegen.Generate(ts.MkAbs(args[0]), nodegen.Config{Seed: seed, TotalBytes: size, Snapshots: true, Backups: true, InFlight: true})
	ts.Check(err)
}

// sametree SRC DST KEYSPACE...: every file below DST/KEYSPACE is identical
// to the same path below SRC, and DST holds nothing else.
func cmdSametree(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: sametree SRC DST KEYSPACE...")
	}
	src, dst := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	var got []string
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		got = append(got, rel)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			return fmt.Errorf("restored %s is not in the source: %w", rel, err)
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("restored %s differs from the source", rel)
		}
		return nil
	})
	ts.Check(err)
	for _, rel := range got {
		ks := strings.Split(rel, string(filepath.Separator))[0]
		if !slices.Contains(args[2:], ks) {
			ts.Fatalf("restored %s is outside the keyspaces %v", rel, args[2:])
		}
	}
	if len(got) == 0 {
		ts.Fatalf("nothing restored")
	}
}
