package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/s3/s3test"
)

// TestS3ServerSideFlags backs up, purges and restores a generated node
// with --s3-sse aws:kms, a KMS key and --s3-storage-class STANDARD_IA
// through a proxy that records every request: every PutObject and
// CreateMultipartUpload carries the encryption headers, only those of
// packs carry the storage class, and the restore is byte-identical.
// versitygw accepts the headers without acting on them.
func TestS3ServerSideFlags(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	cfg.Endpoint = proxy.URL
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 11, TotalBytes: 6 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c := newS3CLI(t, cfg)
	// 1 MiB single PUTs: the larger packs go by multipart upload.
	c.s3 = append(c.s3, "--s3-sse", "aws:kms", "--s3-sse-kms-key-id", "alias/cassback", "--s3-storage-class", "STANDARD_IA",
		"--max-upload-size-mb", "1", "--multipart-chunk-size-mb", "5")
	proxy.Record(true)
	for _, args := range [][]string{
		{"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1"},
		{"purge", "--host", "n1", "--keep-days", "1"},
	} {
		if stdout, stderr, _, code := c.run(args...); code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", args[0], code, stdout, stderr)
		}
	}
	proxy.Record(false)

	kinds := map[string]int{} // uploads by the key's first segment
	for _, r := range proxy.Recorded() {
		var op string
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.Query, "uploadId="):
			op = "UploadPart"
		case r.Method == http.MethodPut:
			op = "PutObject"
		case r.Method == http.MethodPost && strings.Contains(r.Query, "uploads"):
			op = "CreateMultipartUpload"
		default:
			continue
		}
		key := strings.TrimPrefix(r.Path, "/"+cfg.Bucket+"/")
		want := map[string]string{
			"X-Amz-Server-Side-Encryption":                "aws:kms",
			"X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id": "alias/cassback",
			"X-Amz-Storage-Class":                         "",
		}
		if strings.HasPrefix(key, "packs/") {
			want["X-Amz-Storage-Class"] = "STANDARD_IA"
		}
		if op == "UploadPart" {
			want = map[string]string{"X-Amz-Server-Side-Encryption": "", "X-Amz-Storage-Class": ""}
		} else {
			first, _, _ := strings.Cut(key, "/")
			kinds[first+" "+op]++
		}
		for h, v := range want {
			if got := r.Header.Get(h); got != v {
				t.Errorf("%s %s: %s: %q, want %q", op, key, h, got, v)
			}
		}
	}
	t.Logf("uploads: %v", kinds)
	for _, k := range []string{"packs PutObject", "packs CreateMultipartUpload", "config PutObject", "index PutObject", "manifests PutObject",
		"commits PutObject", "sessions PutObject", "gc PutObject"} {
		if kinds[k] == 0 {
			t.Errorf("no %s recorded (recorded %v)", k, kinds)
		}
	}

	restored := filepath.Join(t.TempDir(), "restored")
	if stdout, stderr, _, code := c.run("restore", "--data-dir", restored, "--host", "n1", "--no-chown"); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	sameS3Restore(t, node, data, restored)
}

// TestS3ServerSideFlagsChecked gives bad server-side options: each is a
// one-line usage error (exit 2) naming what is accepted, and nothing
// reaches the server.
func TestS3ServerSideFlagsChecked(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	cfg.Endpoint = proxy.URL
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 1, TotalBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"bad-sse", []string{"--s3-sse", "aes256"}, `cassback: --s3-sse "aes256": want one of AES256, aws:kms, aws:kms:dsse`},
		{"kms-key-without-kms", []string{"--s3-sse", "AES256", "--s3-sse-kms-key-id", "k"}, "cassback: --s3-sse-kms-key-id needs --s3-sse aws:kms or aws:kms:dsse"},
		{"kms-key-alone", []string{"--s3-sse-kms-key-id", "k"}, "cassback: --s3-sse-kms-key-id needs --s3-sse aws:kms"},
		{"bad-class", []string{"--s3-storage-class", "COLD"}, `cassback: --s3-storage-class "COLD": want one of STANDARD, REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING`},
		{"glacier", []string{"--s3-storage-class", "GLACIER"}, `cassback: --s3-storage-class "GLACIER" (archived objects cannot be read without a restore request`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newS3CLI(t, cfg)
			c.s3 = append(c.s3, tt.extra...)
			before := proxy.Requests()
			_, stderr, _, code := c.run("backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")
			if code != 2 || !strings.HasPrefix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and one line starting %q", code, stderr, tt.want)
			}
			if n := proxy.Requests() - before; n != 0 {
				t.Errorf("%d requests reached the server, want none", n)
			}
			if _, err := os.Stat(filepath.Join(c.dir, "cache")); err == nil {
				t.Errorf("the cache folder was created")
			}
		})
	}
	direct := cfg
	direct.Endpoint = server.URL
	if empty, err := storeEmpty(t.Context(), openS3Store(t, direct)); err != nil || !empty {
		t.Errorf("bucket empty: %v, %v; want true", empty, err)
	}
}

// TestAWSSecretWarning: --aws-secret on the command line (where ps shows
// it) draws a one-line warning on stderr naming the alternatives; given in
// an argument file or in CASSBACK_AWS_SECRET it draws none, and works.
func TestAWSSecretWarning(t *testing.T) {
	server := s3test.Start(t)
	cfg := server.Config(t)
	dir := t.TempDir()
	argFile := filepath.Join(dir, "secret.args")
	if err := os.WriteFile(argFile, []byte("--aws-secret="+cfg.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const warning = "cassback: warning: --aws-secret on the command line is visible to every user of this machine (ps); set CASSBACK_AWS_SECRET or put --aws-secret=... in an @file argument file (mode 0600) instead\n"
	base := []string{"--log-file", filepath.Join(dir, "log"), "--cache-dir", filepath.Join(dir, "cache"),
		"--endpoint", "s3", "--s3-endpoint", cfg.Endpoint, "--bucket-name", cfg.Bucket, "--aws-key", cfg.AccessKey}
	for _, tt := range []struct {
		name   string
		args   []string
		env    string // CASSBACK_AWS_SECRET
		warned bool
	}{
		{"flag", []string{"--aws-secret", cfg.SecretKey}, "", true},
		{"flag-equals", []string{"--aws-secret=" + cfg.SecretKey}, "", true},
		{"single-dash", []string{"-aws-secret", cfg.SecretKey}, "", true},
		{"arg-file", []string{"@" + argFile}, "", false},
		{"env", nil, cfg.SecretKey, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CASSBACK_AWS_SECRET", tt.env)
			args := slices.Concat(base, tt.args, []string{"list", "--host", "n1"})
			var out, errb bytes.Buffer
			code := exitCode(run(t.Context(), args, nil, &out, &errb), &errb)
			// An empty store: list fails, after the credentials worked.
			wantErr := "cassback: s3://" + cfg.Bucket + " is not a cassback store"
			stderr := errb.String()
			rest, warned := strings.CutPrefix(stderr, warning)
			if warned != tt.warned || code != 1 || !strings.HasPrefix(rest, wantErr) || strings.Count(rest, "\n") != 1 {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1, the warning %v, then one line starting %q", code, stderr, tt.warned, wantErr)
			}
			if strings.Contains(stderr+out.String(), cfg.SecretKey) {
				t.Errorf("the secret shows in the output")
			}
		})
	}
	// The warning goes with a usage error too, the secret being shown all the same.
	var out, errb bytes.Buffer
	code := exitCode(run(t.Context(), slices.Concat(base, []string{"--aws-secret", "x", "--s3-sse", "bad", "list"}), nil, &out, &errb), &errb)
	if rest, ok := strings.CutPrefix(errb.String(), warning); code != 2 || !ok || !strings.HasPrefix(rest, `cassback: --s3-sse "bad"`) {
		t.Errorf("bad --s3-sse: exit %d, stderr:\n%s\nwant exit 2, the warning, then the usage error", code, errb.String())
	}
}

// TestNoSecretInOutput runs every command that touches a store, at debug
// level, against versitygw (the server's secret, given in an argument file
// as operators should) and against a local store (with a fake secret in
// CASSBACK_AWS_SECRET, unused there), plus the failures that name the
// credentials or the endpoint (a wrong secret, a password in the endpoint
// URL): the secrets never appear on stdout, stderr or in the log.
func TestNoSecretInOutput(t *testing.T) {
	const fake = "FAKE-SECRET-c4ssb4ck-0xDEADBEEF"
	server := s3test.Start(t)
	cfg := server.Config(t)
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 3, TotalBytes: 2 << 20, Snapshots: true}); err != nil {
		t.Fatal(err)
	}
	var outputs []string // every stdout, stderr and log, labelled
	check := func(label, stdout, stderr, log string, code int) {
		outputs = append(outputs, label+" stdout:\n"+stdout, label+" stderr:\n"+stderr, label+" log:\n"+log)
	}
	commands := [][]string{
		{"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1"},
		{"list", "--host", "n1"},
		{"status"},
		{"validate", "--checksum"},
		{"restore", "--data-dir", "RESTORED", "--host", "n1", "--no-chown"},
		{"purge", "--host", "n1", "--keep-days", "1"},
	}
	withDir := func(args []string, dir string) []string {
		args = slices.Clone(args)
		if i := slices.Index(args, "RESTORED"); i >= 0 {
			args[i] = filepath.Join(dir, "restored")
		}
		return args
	}

	// S3: the secret from an argument file (newS3CLI's run).
	c := newS3CLI(t, cfg)
	c.logLevel = "DEBUG"
	for _, args := range commands {
		stdout, stderr, log, code := c.run(withDir(args, c.dir)...)
		if code != 0 {
			t.Fatalf("s3 %s: exit %d\n%s%s", args[0], code, stdout, stderr)
		}
		check("s3 "+args[0], stdout, stderr, log, code)
	}
	// S3 failures: a wrong secret (on the command line, warned about), a
	// password in the endpoint URL.
	for _, tt := range []struct {
		name string
		s3   []string
	}{
		{"wrong-secret", []string{"--endpoint", "s3", "--s3-endpoint", cfg.Endpoint, "--aws-key", cfg.AccessKey, "--aws-secret", fake, "--bucket-name", cfg.Bucket}},
		{"endpoint-password", []string{"--endpoint", "s3", "--s3-endpoint", strings.Replace(cfg.Endpoint, "://", "://"+cfg.AccessKey+":"+fake+"@", 1), "--bucket-name", cfg.Bucket}},
		{"bad-endpoint-password", []string{"--endpoint", "s3", "--s3-endpoint", "u:" + fake + "@host:1", "--bucket-name", cfg.Bucket}},
	} {
		bad := &s3CLI{t: t, dir: t.TempDir(), s3: tt.s3, logLevel: "DEBUG"}
		stdout, stderr, log, code := bad.run("list", "--host", "n1")
		if code == 0 {
			t.Errorf("%s: exit 0, want a failure", tt.name)
		}
		check(tt.name, stdout, stderr, log, code)
	}

	// Local: a fake secret in the environment, unused.
	t.Setenv("CASSBACK_AWS_KEY", "AKIAFAKE")
	t.Setenv("CASSBACK_AWS_SECRET", fake)
	dir := t.TempDir()
	for _, args := range commands {
		var out, errb bytes.Buffer
		logFile := filepath.Join(dir, "log")
		os.Remove(logFile)
		all := slices.Concat([]string{"--backup-base", filepath.Join(dir, "store"), "--cache-dir", filepath.Join(dir, "cache"),
			"--log-file", logFile, "--log-level", "DEBUG"}, withDir(args, dir))
		code := exitCode(run(t.Context(), all, nil, &out, &errb), &errb)
		if code != 0 {
			t.Fatalf("local %s: exit %d\n%s%s", args[0], code, out.String(), errb.String())
		}
		log, _ := os.ReadFile(logFile)
		check("local "+args[0], out.String(), errb.String(), string(log), code)
	}

	debug := 0
	for _, o := range outputs {
		debug += strings.Count(o, "level=DEBUG")
		for _, secret := range []string{cfg.SecretKey, fake} {
			if strings.Contains(o, secret) {
				t.Errorf("the secret %q shows in %s", secret, o)
			}
		}
	}

	if debug == 0 {
		t.Errorf("no debug record logged: the runs were not at debug level")
	}
	t.Logf("%d outputs checked, %d debug records", len(outputs), debug)
}
