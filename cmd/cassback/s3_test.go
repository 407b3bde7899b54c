package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
)

// TestS3Scripts runs the scripts in testdata/s3script with the real binary
// against versitygw, each script with its own bucket given in the
// environment.
func TestS3Scripts(t *testing.T) {
	server := s3test.Start(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/s3script",
		Setup: func(env *testscript.Env) error {
			cfg, err := server.CreateBucket(context.Background())
			if err != nil {
				return err
			}
			for k, v := range map[string]string{
				"CASSBACK_LOG_FILE":    "-",
				"CASSBACK_CACHE_DIR":   filepath.Join(env.WorkDir, ".cache"),
				"CASSBACK_ENDPOINT":    "s3",
				"CASSBACK_S3_ENDPOINT": cfg.Endpoint,
				"CASSBACK_AWS_KEY":     cfg.AccessKey,
				"CASSBACK_AWS_SECRET":  cfg.SecretKey,
				"CASSBACK_BUCKET_NAME": cfg.Bucket,
				"SECRET":               cfg.SecretKey,
			} {
				env.Setenv(k, v)
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"gennode":  cmdGennode,
			"sametree": cmdSametree,
		},
	})
}

// s3CLI runs cassback in-process with the log in a file, so that stderr
// holds only the error line, and returns stdout, stderr, the log and the
// exit status.
type s3CLI struct {
	t        *testing.T
	dir      string
	s3       []string // global options naming the bucket
	logLevel string
}

func newS3CLI(t *testing.T, cfg s3.Config) *s3CLI {
	return &s3CLI{t: t, dir: t.TempDir(), s3: []string{"--endpoint", "s3", "--s3-endpoint", cfg.Endpoint,
		"--aws-key", cfg.AccessKey, "--aws-secret", cfg.SecretKey, "--bucket-name", cfg.Bucket}}
}

func (c *s3CLI) run(args ...string) (stdout, stderr, log string, code int) {
	c.t.Helper()
	var out, errb bytes.Buffer
	logFile := filepath.Join(c.dir, "log")
	os.Remove(logFile)
	all := append([]string{"--log-file", logFile, "--cache-dir", filepath.Join(c.dir, "cache")}, c.s3...)
	if c.logLevel != "" {
		all = append(all, "--log-level", c.logLevel)
	}
	if i := slices.Index(all, "--aws-secret"); i >= 0 && i+1 < len(all) {
		// In an argument file, as operators should: on the command line
		// it draws a warning (TestAWSSecretWarning).
		file := filepath.Join(c.dir, "secret.args")
		if err := os.WriteFile(file, []byte("--aws-secret="+all[i+1]+"\n"), 0o600); err != nil {
			c.t.Fatal(err)
		}
		all = slices.Concat(all[:i], []string{"@" + file}, all[i+2:])
	}
	code = exitCode(run(c.t.Context(), append(all, args...), nil, &out, &errb), &errb)
	b, _ := os.ReadFile(logFile)
	return out.String(), errb.String(), string(b), code
}

func TestS3Errors(t *testing.T) {
	server := s3test.Start(t)
	good := server.Config(t)
	stopped := s3test.Start(t)
	stopped.Stop()
	with := func(f func(*s3.Config)) s3.Config { c := good; f(&c); return c }
	for _, tt := range []struct {
		name  string
		cfg   s3.Config
		extra []string
		code  int
		want  string
	}{
		{"wrong-secret", with(func(c *s3.Config) { c.SecretKey = "not-the-secret" }), nil, 1,
			"cassback: s3: credentials rejected by " + server.URL + " (SignatureDoesNotMatch)"},
		{"unknown-key", with(func(c *s3.Config) { c.AccessKey = "nobody" }), nil, 1,
			"cassback: s3: credentials rejected by " + server.URL + " (XAdminUserNotFound)"},
		{"missing-bucket", with(func(c *s3.Config) { c.Bucket = "no-such-bucket" }), nil, 1,
			`cassback: s3: bucket "no-such-bucket" at ` + server.URL + " does not exist"},
		{"unreachable", with(func(c *s3.Config) { c.Endpoint = stopped.URL }), []string{"--retries", "1"}, 1,
			"cassback: s3: cannot reach " + stopped.URL + ": dial tcp " + strings.TrimPrefix(stopped.URL, "http://") + ": connect: connection refused (gave up after 2 attempts)"},
		{"no-bucket", with(func(c *s3.Config) { c.Bucket = "" }), nil, 2, "cassback: --bucket-name is required with --endpoint s3"},
		{"small-parts", good, []string{"--multipart-chunk-size-mb", "4"}, 2, "cassback: --multipart-chunk-size-mb 4: want 5 to 5120"},
		{"big-single-put", good, []string{"--max-upload-size-mb", "6000"}, 2, "cassback: --max-upload-size-mb 6000: want 1 to 5120"},
		{"negative-retries", good, []string{"--retries", "-1"}, 2, "cassback: --retries -1: must be 0 or more"},
		{"key-without-secret", with(func(c *s3.Config) { c.SecretKey = "" }), nil, 2, "cassback: --aws-key and --aws-secret go together"},
		{"bad-endpoint", with(func(c *s3.Config) { c.Endpoint = "127.0.0.1:7070" }), nil, 1, `cassback: s3: endpoint "127.0.0.1:7070": want a URL like https://host:port`},
		{"bad-prefix", good, []string{"--key-prefix", "a b"}, 1, `cassback: s3: key prefix: invalid key "a b"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newS3CLI(t, tt.cfg)
			for _, empty := range []string{"--bucket-name", "--aws-secret"} {
				if i := slices.Index(c.s3, empty); c.s3[i+1] == "" {
					c.s3 = slices.Delete(c.s3, i, i+2)
				}
			}
			c.s3 = append(c.s3, tt.extra...)
			stdout, stderr, log, code := c.run("list", "--host", "h")
			if code != tt.code {
				t.Errorf("exit status %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if !strings.HasPrefix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr:\n%s\nwant one line starting %q", stderr, tt.want)
			}
			for _, out := range []string{stdout, stderr, log} {
				if strings.Contains(out, good.SecretKey) || strings.Contains(out, "not-the-secret") {
					t.Errorf("the secret key shows in the output:\n%s", out)
				}
			}
		})
	}

	// --help never shows a secret, even one set in the environment.
	t.Setenv("CASSBACK_AWS_SECRET", "secret-from-env")
	var out, errb bytes.Buffer
	if code := exitCode(run(t.Context(), []string{"--help"}, nil, &out, &errb), &errb); code != 0 || strings.Contains(out.String()+errb.String(), "secret-from-env") {
		t.Errorf("--help: exit %d, output shows the secret: %v", code, strings.Contains(out.String(), "secret-from-env"))
	}
}

// TestS3ServerDown takes the server away in the middle of a backup: the
// backup retries, reports and fails; no manifest names data that is not
// stored; the next backup completes and restores byte-identical.
func TestS3ServerDown(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	direct := openS3Store(t, cfg)
	cfg.Endpoint = proxy.URL
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 60 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c := newS3CLI(t, cfg)
	backup := []string{"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1", "--threads", "2"}

	// Open, the store config and the first packs get through; then the
	// server is gone.
	proxy.SetDownAfter(20)
	start := time.Now()
	_, stderr, log, code := c.run(append([]string{"--retries", "2"}, backup...)...)
	t.Logf("failed backup: %v, %d requests", time.Since(start), proxy.Requests())
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "(gave up after 3 attempts)") ||
		!strings.Contains(stderr, "connection reset by peer") {
		t.Errorf("backup with the server down: exit %d, stderr:\n%s\nwant exit 1 and one line saying it gave up after 3 attempts", code, stderr)
	}
	if n := strings.Count(log, `msg="store request failed; retrying"`); n < 2 {
		t.Errorf("log: %d retries logged, want at least 2:\n%s", n, log)
	}
	if !strings.Contains(log, `msg="store requests"`) {
		t.Errorf("log: no request counts:\n%s", log)
	}
	if ms := checkS3Store(t, direct, "n1"); len(ms) != 0 {
		t.Errorf("manifests after the failed backup: %v, want none", ms)
	}

	// The server is back: the same backup completes, and restores.
	proxy.SetDown(false)
	if stdout, stderr, _, code := c.run(backup...); code != 0 {
		t.Fatalf("backup after the server came back: exit %d\n%s%s", code, stdout, stderr)
	}
	if ms := checkS3Store(t, direct, "n1"); len(ms) == 0 {
		t.Errorf("no manifests after the second backup")
	}
	restored := filepath.Join(t.TempDir(), "restored")
	if stdout, stderr, _, code := c.run("restore", "--data-dir", restored, "--host", "n1", "--no-chown"); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	sameS3Restore(t, node, data, restored)
}

func openS3Store(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	st, err := s3.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkS3Store checks that every pack in the store is whole and that every
// chunk every manifest of host names is in one of them, and returns the
// manifests' names.
func checkS3Store(t *testing.T, st remote.Store, host string) []string {
	t.Helper()
	ctx := t.Context()
	packs := map[string]bool{}
	err := st.List(ctx, "packs/", func(info remote.Info) error {
		if _, _, err := pack.ReadHeader(ctx, st, info.Key); err != nil {
			t.Errorf("pack %s (%d bytes) is damaged: %v", info.Key, info.Size, err)
			return nil
		}
		packs[info.Key] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = st.List(ctx, "manifests/"+host+"/", func(info remote.Info) error {
		names = append(names, path.Base(info.Key))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		return nil
	}
	idx := index.New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		m, err := manifest.Get(ctx, st, name, cassback.ChunksOf(st))
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range m.Tables {
			for _, f := range tb.Files {
				for _, ref := range f.Chunks {
					loc, ok := idx.Lookup(ref.ID)
					if !ok || !packs[pack.Key(loc.Pack)] {
						t.Errorf("manifest %s: %s: chunk %x is in no stored pack", name, f.Path, ref.ID[:6])
						return names
					}
				}
			}
		}
	}
	return names
}

// sameS3Restore checks that every live file of the node's keyspaces but
// system was restored byte-identical.
func sameS3Restore(t *testing.T, node *nodegen.Node, src, dst string) {
	t.Helper()
	n := 0
	for _, rel := range node.LiveFiles {
		if strings.HasPrefix(rel, "system/") {
			continue
		}
		a, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil {
			t.Errorf("restored %s: %v", rel, err)
			continue
		}
		if !bytes.Equal(a, b) {
			t.Errorf("restored %s differs from the source", rel)
		}
		n++
	}
	if n == 0 {
		t.Errorf("no files compared")
	}
	var extra []string
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			if !slices.Contains(node.LiveFiles, filepath.ToSlash(rel)) {
				extra = append(extra, rel)
			}
		}
		return nil
	})
	if len(extra) > 0 {
		t.Errorf("restored files that are not live files of the node: %v", extra[:min(len(extra), 5)])
	}
}

// s3FaultBytes is the size of the node TestS3Faults backs up:
// CASSBACK_S3_FAULT_BYTES if set; else 40 MB with -short; else 100 MB
// under the race detector (generating and chunking 500 MB takes about two
// minutes there, more while CI runs other packages beside it); else 500 MB
// (about 15 s).
func s3FaultBytes(t *testing.T) int64 {
	if s := os.Getenv("CASSBACK_S3_FAULT_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("CASSBACK_S3_FAULT_BYTES: %v", err)
		}
		return n
	}
	switch {
	case testing.Short():
		return 40 << 20
	case raceEnabled():
		return 100 << 20
	}
	return 500 << 20
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestS3Faults backs up a generated node through a proxy that fails 5% of
// the requests (500, 503 SlowDown, connection resets before, after and
// in the middle of the answer, latency), then restores it through the
// same proxy: both complete and the restore is byte-identical.
func TestS3Faults(t *testing.T) {
	size := s3FaultBytes(t)
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	direct := openS3Store(t, cfg)
	cfg.Endpoint = proxy.URL
	data := filepath.Join(t.TempDir(), "data")
	start := time.Now()
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 42, TotalBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d MB in %d files in %v", node.Bytes>>20, len(node.LiveFiles), time.Since(start).Round(time.Millisecond))
	proxy.Set(s3test.Faults{Rate: 0.05, Seed: 7, Latency: 100 * time.Millisecond})
	c := newS3CLI(t, cfg)
	// Short backoff: the faults come one request in twenty, not in bursts.
	c.s3 = append(c.s3, "--retries", "8")

	start = time.Now()
	stdout, stderr, log, code := c.run("backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")
	if code != 0 {
		t.Fatalf("backup with 5%% faults: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("backup: %v, %d requests, faults %v, %d retries logged", time.Since(start).Round(time.Millisecond),
		proxy.Requests(), proxy.Injected(), strings.Count(log, "retrying"))
	t.Logf("backup %s", s3RequestLine(log))
	checkS3Store(t, direct, "n1")

	restored := filepath.Join(t.TempDir(), "restored")
	before, injected := proxy.Requests(), proxy.Injected()
	start = time.Now()
	stdout, stderr, log, code = c.run("restore", "--data-dir", restored, "--host", "n1", "--no-chown")
	if code != 0 {
		t.Fatalf("restore with 5%% faults: exit %d\n%s%s", code, stdout, stderr)
	}
	after := proxy.Injected()
	for k, v := range injected {
		after[k] -= v
	}
	t.Logf("restore: %v, %d requests, faults %v, %d retries logged", time.Since(start).Round(time.Millisecond),
		proxy.Requests()-before, after, strings.Count(log, "retrying"))
	t.Logf("restore %s", s3RequestLine(log))
	sameS3Restore(t, node, data, restored)
}

func s3RequestLine(log string) string {
	for l := range strings.Lines(log) {
		if strings.Contains(l, `msg="store requests"`) {
			_, rest, _ := strings.Cut(l, `msg="store requests" `)
			return strings.TrimSpace(rest)
		}
	}
	return "(no request counts logged)"
}
