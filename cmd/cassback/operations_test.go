package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/throttle"
)

// The examples docs/operations.md ships.
const (
	exampleUnit = "../../docs/examples/cassback.service"
	exampleConf = "../../docs/examples/cassback.conf"
	exampleK8s  = "../../docs/examples/k8s-sidecar.yaml"
)

// needProgram returns the path of a program a test needs: where it is
// missing the test is skipped, or fails when CI is set.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (CI is set): %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// selfAsCassback returns the path of a link named cassback to this test
// binary, which TestMain runs as the command.
func selfAsCassback(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "cassback")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// unitExecStart returns the arguments of the unit's ExecStart= line.
func unitExecStart(t *testing.T, unit string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("the unit has no ExecStart=")
	}
	return strings.Fields(m[1])
}

// TestSystemdUnit checks that systemd accepts the example unit (with
// ExecStart pointing at a binary that exists), that its hardening is
// there, and that systemd rates its exposure low.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile(exampleUnit)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"User=cassandra", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
		"ReadWritePaths=/var/lib/cassandra\n", "CacheDirectory=cassback", "LogsDirectory=cassback",
		"IOWeight=", "CPUWeight=", "Nice=", "RestartPreventExitStatus=2", "TimeoutStopSec=2min",
		"install -d -o cassandra -g cassandra -m 0700 /var/lib/cassandra/.cassback-hold-data",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	// A read-only bind mount of the data directory makes every hold
	// fail (TestHoldNeedsOneMount).
	if regexp.MustCompile(`(?m)^ReadOnlyPaths=.*/var/lib/cassandra/data\b`).MatchString(unit) {
		t.Error("the unit makes the data directory read-only: hard links into the hold folder would cross mounts")
	}
	args := unitExecStart(t, unit)
	if args[0] != "/usr/local/bin/cassback" {
		t.Fatalf("ExecStart runs %s, want /usr/local/bin/cassback", args[0])
	}

	analyze := needProgram(t, "systemd-analyze")
	path := filepath.Join(t.TempDir(), "cassback.service")
	unit = strings.ReplaceAll(unit, "/usr/local/bin/cassback", selfAsCassback(t))
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline=true not available: %v", err)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for cassback.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", level)
	if level > 2 {
		t.Errorf("exposure level %.1f, want at most 2 (OK)", level)
	}
}

// setupFrom parses global options as the command does and runs setup,
// logging nowhere; it returns the globals.
func setupFrom(t *testing.T, args ...string) *globals {
	t.Helper()
	args, err := expandArgFiles(args)
	if err != nil {
		t.Fatal(err)
	}
	g := &globals{stdout: io.Discard, stderr: io.Discard}
	fs := flag.NewFlagSet("cassback", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	if err := fs.Parse(append(args, "--log-file=-")); err != nil {
		t.Fatal(err)
	}
	if fs.NArg() > 0 {
		t.Fatalf("arguments left after the options: %q", fs.Args())
	}
	g.flagSets = map[string]*flag.FlagSet{"": fs}
	if err := g.setup(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.closeLog)
	return g
}

// TestExampleArgFile checks that the example argument file holds only
// global options that parse and pass every check, that the unit's command
// line parses with it, and that the Kubernetes example's copy does too.
func TestExampleArgFile(t *testing.T) {
	g := setupFrom(t, "@"+exampleConf)
	want := throttle.Config{Upload: 50 << 20, Requests: 200}
	if got := g.limiter.Config(); got != want || g.endpoint != "s3" || g.cacheDir != "/var/cache/cassback" {
		t.Errorf("got limits %+v, endpoint %s, cache %s; want %+v, s3, /var/cache/cassback", got, g.endpoint, g.cacheDir, want)
	}

	b, err := os.ReadFile(exampleUnit)
	if err != nil {
		t.Fatal(err)
	}
	args := unitExecStart(t, string(b))[1:]
	for i, a := range args {
		if a == "@/etc/cassback/cassback.conf" {
			args[i] = "@" + exampleConf
		}
	}
	out, stderr, code := cli(t, t.TempDir(), append(args, "-h")...)
	if code != 0 || !strings.Contains(out, "cassandra_data_dir") {
		t.Errorf("ExecStart's arguments with -h: exit status %d\n%s%s", code, out, stderr)
	}

	// The ConfigMap's cassback.conf: the lines of its literal block.
	k8s, err := os.ReadFile(exampleK8s)
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)cassback\.conf: \|\n(.*?)\n---`).FindSubmatch(k8s)
	if block == nil {
		t.Fatal("no cassback.conf in the ConfigMap")
	}
	var lines []string
	for _, l := range strings.Split(string(block[1]), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	conf := writeArgFile(t, t.TempDir(), "cassback.conf", lines...)
	g = setupFrom(t, "@"+conf)
	if got := g.limiter.Config(); got != want || g.logFile != "-" {
		t.Errorf("ConfigMap: got limits %+v, log file %s; want %+v and -", got, g.logFile, want)
	}
}

// TestHoldNeedsOneMount runs the unit's continuous backup for a few seconds
// in a private mount namespace laid out as the example unit's sandbox is
// (everything read-only but /var/lib/cassandra, the cache and the store),
// and again with the data directory read-only as well, as
// ReadOnlyPaths=/var/lib/cassandra/data would make it: the first backs
// up and drains on SIGTERM (exit 0); the second cannot hold a single
// SSTable, since a hard link cannot cross from one mount to another even
// on one file system, and exits 1 saying so. Needs root and unshare(1).
func TestHoldNeedsOneMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, for a private mount namespace")
	}
	unshare := needProgram(t, "unshare")
	root := t.TempDir()
	lib := filepath.Join(root, "var", "lib", "cassandra")
	if _, err := nodegen.Generate(filepath.Join(lib, "data"), nodegen.Config{Seed: 3, TotalBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"cache-unit", "store-unit", "cache-ro", "store-ro"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cassback := selfAsCassback(t)
	// $1 the root, $2 cassback, $3 "ro" to make the data directory
	// read-only too; each variant has its own store and cache, so that
	// the second backup reads (and holds) every file again.
	const script = `set -e
mount --make-rprivate /
rw() { mount --bind "$1" "$1"; mount -o remount,bind,rw "$1"; }
ro() { mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; }
ro "$1"
rw "$1/var/lib/cassandra"
rw "$1/cache-$3"
rw "$1/store-$3"
if [ "$3" = ro ]; then ro "$1/var/lib/cassandra/data"; fi
# --foreground: GNU timeout otherwise signals its process group too, and a
# second SIGTERM stops cassback at once instead of letting it drain.
exec timeout --foreground --preserve-status -s TERM 10 "$2" --log-file=- --log-level=ERROR \
	--cache-dir="$1/cache-$3" --backup-base="$1/store-$3" \
	backup --host=n1 --cassandra_data_dir="$1/var/lib/cassandra/data" --manifest-interval-secs=0.5`
	for _, tt := range []struct {
		variant string
		code    int
		want    string
	}{
		{"unit", 0, "Backed up"},
		{"ro", 1, "hold folder is on another file system than the data directory"},
	} {
		t.Run(tt.variant, func(t *testing.T) {
			cmd := exec.Command(unshare, "--mount", "sh", "-c", script, "sh", root, cassback, tt.variant)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(out.String(), tt.want) || (code == 0 && strings.Contains(out.String(), "Backed up 0 SSTables")) {
				t.Errorf("exit status %d, want %d and output with %q:\n%s", code, tt.code, tt.want, out.String())
			}
			if _, err := os.Stat(filepath.Join(lib, ".cassback-hold-data")); err != nil {
				t.Errorf("no hold folder beside the data directory: %v", err)
			}
		})
	}
}
