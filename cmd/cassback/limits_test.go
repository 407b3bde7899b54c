package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// TestFlagLimits checks that a numeric option out of its range is a usage
// error (exit 2) on one line naming the option and the range, before any
// store is opened: --threads 1000000 cost 2.9 GB, --session-heartbeat
// 1000000h overflowed the lease check, --keep-days 200000 overflowed into
// a cut-off in the future. The store is a missing folder, so a value that
// is wrongly accepted fails cheaply with exit 1.
func TestFlagLimits(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	nodata := filepath.Join(dir, "nodata")
	survey := filepath.Join(dir, "survey.log")
	if err := os.WriteFile(survey, []byte("2000-01-01T00:00:00Z stored packs/ab/abcd 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string // all of stderr but the trailing newline
	}{
		{[]string{"backup", "--ignore-changes", "--cassandra_data_dir", nodata, "--threads", "1000000"}, "cassback: --threads 1000000: want 1 to 64"},
		{[]string{"backup", "--ignore-changes", "--cassandra_data_dir", nodata, "--threads", "0"}, "cassback: --threads 0: want 1 to 64"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--drain-timeout", "-1s"}, "cassback: --drain-timeout -1s: want 0s to 24h"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--drain-timeout", "1000000h"}, "cassback: --drain-timeout 1000000h: want 0s to 24h"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--manifest-interval-secs", "NaN"}, "cassback: --manifest-interval-secs NaN: want 0.01 to 86400"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--manifest-interval-secs", "1e300"}, "cassback: --manifest-interval-secs 1e+300: want 0.01 to 86400"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--report-interval-secs", "-1"}, "cassback: --report-interval-secs -1: want 0 to 86400"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--report-interval-secs", "99999999999"}, "cassback: --report-interval-secs 99999999999: want 0 to 86400"},
		{[]string{"restore", "--data-dir", dir, "--threads", "1000000"}, "cassback: --threads 1000000: want 1 to 64"},
		{[]string{"restore", "--data-dir", dir, "--report-interval-secs", "-1"}, "cassback: --report-interval-secs -1: want 0 to 86400"},
		{[]string{"validate", "--threads", "1000000"}, "cassback: --threads 1000000: want 1 to 64"},
		{[]string{"validate", "--threads", "-5"}, "cassback: --threads -5: want 1 to 64"},
		{[]string{"check-store", "--racers", "1000000"}, "cassback: --racers 1000000: want 2 to 256"},
		{[]string{"check-store", "--rounds", "1000000"}, "cassback: --rounds 1000000: want 1 to 1000"},
		{[]string{"check-store", "--rounds", "0"}, "cassback: --rounds 0: want at least 1"}, // as before
		{[]string{"--session-heartbeat", "1000000h", "list"}, "cassback: --session-heartbeat 1000000h: want 100ms to 24h"},
		{[]string{"--session-heartbeat", "-1s", "list"}, "cassback: --session-heartbeat -1s: want 100ms to 24h"},
		{[]string{"--session-lease", "1000000h", "list"}, "cassback: --session-lease 1000000h: want 300ms to 168h"},
		{[]string{"--s3-request-timeout", "1000000h", "list"}, "cassback: --s3-request-timeout 1000000h: want 1s to 1h"},
		{[]string{"--retries", "9223372036854775807", "list"}, "cassback: --retries 9223372036854775807: want 0 to 100"},
		{[]string{"--multipart-chunk-size-mb", "1000000", "list"}, "cassback: --multipart-chunk-size-mb 1000000: want 5 to 5120"},
		{[]string{"backup", "--cassandra_data_dir", nodata, "--host", strings.Repeat("h", 180)}, "cassback: --host \"" + strings.Repeat("h", 180) + "\": 180 bytes, more than 179 (a backup name holds the host and the keyspace in 255 bytes)"},
		{[]string{"purge", "--keep-days", "200000"}, "cassback: --keep-days 200000: want 0 to 36500"},
		{[]string{"purge", "--keep-days", "1", "--grace", "-1h"}, "cassback: --grace -1h: want 0s to 8760h"},
		{[]string{"purge", "--keep-days", "1", "--grace", "1000000h"}, "cassback: --grace 1000000h: want 0s to 8760h"},
		{[]string{"purge", "--keep-days", "1", "--new-pack-margin", "-1h"}, "cassback: --new-pack-margin -1h: want 0s to 8760h"},
		{[]string{"purge", "--keep-days", "1", "--repack-threshold", "NaN"}, "cassback: --repack-threshold NaN: want 0.01 to 1"},
		{[]string{"purge", "--keep-days", "1", "--repack-threshold", "2"}, "cassback: --repack-threshold 2: want 0.01 to 1"},
		{[]string{"survey-report", survey, "--price-put", "Inf"}, "cassback: --price-put +Inf: want 0 to 1000000"},
		{[]string{"survey-report", survey, "--extrapolate-to", "2100-01-01"}, "cassback: --extrapolate-to 2100-01-01: the report would cover more than 10 years (87840 hours) from the survey's first line at 2000-01-01T00:00:00Z"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, code := cli(t, filepath.Join(dir, "cache"), append([]string{"--backup-base", missing}, tt.args...)...)
			if code != 2 || strings.TrimSuffix(stderr, "\n") != tt.want {
				t.Errorf("got exit status %d, stderr:\n%s\nwant 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a command with a bad option created the store's folder")
	}
}

// TestSurveyReportSpan checks that a survey log whose lines span centuries
// is refused, naming the file, instead of summing millions of hours.
func TestSurveyReportSpan(t *testing.T) {
	dir := t.TempDir()
	survey := filepath.Join(dir, "survey.log")
	log := "1900-01-01T00:00:00Z stored packs/ab/abcd 100\n2100-01-01T00:00:00Z stored packs/ab/abce 100\n"
	if err := os.WriteFile(survey, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := cli(t, filepath.Join(dir, "cache"), "survey-report", survey, "--extrapolate-to", "2100-01-01")
	want := "cassback: survey-report " + survey + ": the report would cover more than 10 years (87840 hours) from the survey's first line at 1900-01-01T00:00:00Z"
	if code != 1 || strings.TrimSuffix(stderr, "\n") != want {
		t.Errorf("got exit status %d, stderr:\n%s\nwant 1 and %q", code, stderr, want)
	}
}

// TestEveryNumericOptionLimited checks that every numeric option of every
// command has a limit of its own type, that its default is within it, that
// a value just outside either end is a one-line usage error naming the
// option, and that docs/cli.md gives the range.
func TestEveryNumericOptionLimited(t *testing.T) {
	g := &globals{}
	rootFS := flag.NewFlagSet("cassback", flag.ContinueOnError)
	g.register(rootFS)
	var root *ffcli.Command
	sets := map[string]*flag.FlagSet{"": rootFS}
	for _, c := range commands(g, nil, &root) {
		sets[c.Name] = c.FlagSet
	}
	docs, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seen := 0
	for cmd, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) {
			getter, ok := f.Value.(flag.Getter)
			if !ok {
				return
			}
			def := getter.Get()
			switch def.(type) {
			case int, float64, time.Duration:
			default:
				return
			}
			seen++
			name := strings.TrimSpace(cmd + " --" + f.Name)
			l, ok := limits[cmd][f.Name]
			if !ok {
				t.Errorf("%s: no limit", name)
				return
			}
			if reflect.TypeOf(l.lo) != reflect.TypeOf(def) || reflect.TypeOf(l.hi) != reflect.TypeOf(def) {
				t.Errorf("%s: limit %T to %T, want the option's type %T", name, l.lo, l.hi, def)
				return
			}
			if err := l.check(f.Name, def); err != nil {
				t.Errorf("%s: default out of range: %v", name, err)
			}
			rng := limitText(l.lo) + " to " + limitText(l.hi)
			if !docMentions(string(docs), "`--"+f.Name, rng) {
				t.Errorf("%s: docs/cli.md has no line with `--%s and %q", name, f.Name, rng)
			}
			var bad []string
			switch lo, hi := l.lo, l.hi; def.(type) {
			case int:
				bad = []string{fmt.Sprint(lo.(int) - 1), fmt.Sprint(hi.(int) + 1)}
			case float64:
				bad = []string{fmt.Sprint(math.Nextafter(lo.(float64), math.Inf(-1))), fmt.Sprint(math.Nextafter(hi.(float64), math.Inf(1))), "NaN"}
			case time.Duration:
				bad = []string{(lo.(time.Duration) - 1).String(), (hi.(time.Duration) + 1).String()}
			}
			for _, v := range bad {
				args := []string{"--backup-base", filepath.Join(dir, "missing")}
				switch cmd {
				case "":
					args = append(args, "--"+f.Name+"="+v, "list")
				case "survey-report":
					args = append(args, cmd, "--"+f.Name+"="+v, filepath.Join(dir, "survey.log"))
				default:
					args = append(args, cmd, "--"+f.Name+"="+v)
				}
				_, stderr, code := cli(t, filepath.Join(dir, "cache"), args...)
				if code != 2 || !strings.HasPrefix(stderr, "cassback: --"+f.Name+" ") || strings.Count(stderr, "\n") != 1 {
					t.Errorf("%s=%s: got exit status %d, stderr:\n%s\nwant 2 and one line naming --%s", name, v, code, stderr, f.Name)
				}
			}
		})
	}
	if seen < 20 {
		t.Errorf("found %d numeric options, want at least 20", seen)
	}
	for cmd, ls := range limits {
		for name := range ls {
			if sets[cmd] == nil || sets[cmd].Lookup(name) == nil {
				t.Errorf("limit for %q --%s, which does not exist", cmd, name)
			}
		}
	}
}

// docMentions reports whether a line of doc holds both a and b.
func docMentions(doc, a, b string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return true
		}
	}
	return false
}

// TestFlagLimitsFromEnvAndFile checks that a value from a CASSBACK_*
// variable or an argument file is held to the same limits.
func TestFlagLimitsFromEnvAndFile(t *testing.T) {
	dir := t.TempDir()
	conf := writeArgFile(t, dir, "threads.conf", "--threads=1000000")
	_, stderr, code := cli(t, filepath.Join(dir, "cache"), "--backup-base", dir, "validate", "@"+conf)
	if want := "cassback: --threads 1000000: want 1 to 64\n"; code != 2 || stderr != want {
		t.Errorf("argument file: got exit status %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	t.Setenv("CASSBACK_SESSION_HEARTBEAT", "1000000h")
	_, stderr, code = cli(t, filepath.Join(dir, "cache"), "--backup-base", dir, "list")
	if want := "cassback: --session-heartbeat 1000000h: want 100ms to 24h\n"; code != 2 || stderr != want {
		t.Errorf("environment: got exit status %d, stderr %q; want 2 and %q", code, stderr, want)
	}
}
