package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/s3/kmstest"
)

// TestEncryptedCLI drives an encrypted store through the command line: a
// key file creates it, a passphrase slot and a KMS slot are added, each
// source opens it, a wrong key and a passphrase given as an argument are
// refused with nothing written, the last slot cannot be removed, and no
// output or log of any run holds the passphrase or the key file's bytes.
func TestEncryptedCLI(t *testing.T) {
	kms := kmstest.Start(t)
	const pass = "correct-horse-battery-staple-c4ssb4ck"
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 4, TotalBytes: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	keyFile := filepath.Join(dir, "key")
	var outputs []string
	cli := func(env map[string]string, args ...string) (string, string, int) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		defer func() {
			for k := range env {
				os.Unsetenv(k)
			}
		}()
		var out, errb bytes.Buffer
		logFile := filepath.Join(dir, "log")
		os.Remove(logFile)
		all := slices.Concat([]string{"--backup-base", store, "--cache-dir", filepath.Join(dir, "cache"), "--log-file", logFile, "--log-level", "DEBUG",
			"--kms-endpoint", kms.URL, "--kms-region", kmstest.Region}, args)
		t.Setenv("CASSBACK_AWS_KEY", "cassback-kms-test")
		t.Setenv("CASSBACK_AWS_SECRET", "cassback-kms-test-secret")
		code := exitCode(run(t.Context(), all, nil, &out, &errb), &errb)
		log, _ := os.ReadFile(logFile)
		outputs = append(outputs, strings.Join(args, " ")+"\n"+out.String()+errb.String()+string(log))
		return out.String(), errb.String(), code
	}
	must := func(env map[string]string, args ...string) string {
		t.Helper()
		out, errs, code := cli(env, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
		return out
	}
	listing := func() []string {
		var keys []string
		filepath.WalkDir(store, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.Contains(p, ".locks") {
				keys = append(keys, p)
			}
			return nil
		})
		return keys
	}

	must(nil, "key", "generate", keyFile)
	if out := must(nil, "--key-file", keyFile, "init"); !strings.Contains(out, "encrypted: yes") {
		t.Fatalf("init: %q, want an encrypted store", out)
	}
	must(nil, "--key-file", keyFile, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")
	must(map[string]string{"CASSBACK_NEW_PASSPHRASE": pass}, "--key-file", keyFile, "key", "add")
	must(map[string]string{"CASSBACK_PASSPHRASE": pass}, "key", "add", "--new-kms-key-id", kmstest.KeyAlias)
	slots := must(map[string]string{"CASSBACK_PASSPHRASE": pass}, "key", "list")
	for _, kind := range []string{"key-file", "passphrase", "kms"} {
		if !strings.Contains(slots, kind) {
			t.Errorf("key list: %q lacks a %s slot", slots, kind)
		}
	}
	// Each source opens the store; the KMS one restores it whole.
	if out := must(nil, "--kms-key-id", kmstest.KeyAlias, "list", "--hosts"); !strings.Contains(out, "encrypted: yes") {
		t.Errorf("list --hosts: %q, want it to say the store is encrypted", out)
	}
	must(map[string]string{"CASSBACK_PASSPHRASE": pass}, "validate", "--checksum")
	restored := filepath.Join(dir, "restored")
	must(nil, "--kms-key-id", kmstest.KeyAlias, "restore", "--data-dir", restored, "--host", "n1", "--no-chown")
	n := 0
	filepath.WalkDir(restored, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(restored, p)
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(data, rel))
			if !bytes.Equal(a, b) {
				t.Errorf("restored %s differs from the source", rel)
			}
			n++
		}
		return nil
	})
	if n == 0 {
		t.Error("restore wrote no file")
	}

	// Refusals, with nothing written.
	before := listing()
	other := filepath.Join(dir, "other-key")
	must(nil, "key", "generate", other)
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"wrong key file", nil, []string{"--key-file", other, "list", "--hosts"}, 1, "no key slot of store"},
		{"wrong passphrase", map[string]string{"CASSBACK_PASSPHRASE": "not it"}, []string{"list", "--hosts"}, 1, "no key slot of store"},
		{"no key", nil, []string{"list", "--hosts"}, 1, "the store is encrypted"},
		{"passphrase argument", nil, []string{"--passphrase", pass, "list", "--hosts"}, 2, "would show in ps"},
		{"backup with a wrong key", nil, []string{"--key-file", other, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n2"}, 1, "no key slot"},
	} {
		out, errs, code := cli(tt.env, tt.args...)
		if code != tt.code || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tt.want) {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want exit %d and one line saying %q", tt.name, code, errs, out, tt.code, tt.want)
		}
	}
	if after := listing(); !slices.Equal(before, after) {
		t.Errorf("refused commands changed the store: %d objects before, %d after", len(before), len(after))
	}

	// Slots go until one is left, which stays.
	ids := regexp.MustCompile(`(?m)^([0-9a-f]{16})\s+(\S+)`).FindAllStringSubmatch(slots, -1)
	if len(ids) != 3 {
		t.Fatalf("key list: %q, want 3 slots", slots)
	}
	for i, m := range ids {
		_, errs, code := cli(map[string]string{"CASSBACK_PASSPHRASE": pass}, "--key-file", keyFile, "--kms-key-id", kmstest.KeyAlias, "key", "remove", m[1])
		if last := i == len(ids)-1; last != (code != 0) {
			t.Errorf("key remove of slot %d of %d (%s): exit %d, %q", i+1, len(ids), m[2], code, errs)
		} else if last && !strings.Contains(errs, "last") {
			t.Errorf("key remove of the last slot: %q, want it refused as the last", errs)
		}
	}

	key, _ := os.ReadFile(keyFile)
	secrets := []string{pass, string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key)}
	for _, o := range outputs {
		label, body, _ := strings.Cut(o, "\n")
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("a secret shows in the output of %s", label)
			}
		}
	}
	t.Logf("%d runs' outputs and logs checked for %d forms of the secrets", len(outputs), len(secrets))
}
