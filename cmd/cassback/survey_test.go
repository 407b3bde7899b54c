package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/survey"
)

// cli runs cassback in-process with a log on stderr and the given cache.
func cli(t *testing.T, cache string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append([]string{"--log-file", "-", "--cache-dir", cache}, args...)
	code = exitCode(run(t.Context(), args, nil, &out, &errb), &errb)
	return out.String(), errb.String(), code
}

// storeBytes sums the sizes of every object of st.
func storeBytes(t *testing.T, st remote.Store) (total int64, objects int) {
	t.Helper()
	err := st.List(context.Background(), "", func(i remote.Info) error {
		total += i.Size
		objects++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total, objects
}

// TestSurveyPredictsLocalStore backs up one generated node into a local
// store and into a survey, and checks that the survey predicts the bytes the
// local store holds within 1%, that list, show, validate and purge work on
// the survey's meta dir, that a restore from it fails clearly, and that
// survey-report reads the survey. Each store draws its own chunker polynomial, so the two cut
// chunks in different places: the sizes are close, not equal.
func TestSurveyPredictsLocalStore(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up a 32 MiB node twice")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 1, TotalBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	storeDir := filepath.Join(dir, "store")
	logPath, metaDir := filepath.Join(dir, "survey", "survey.log"), filepath.Join(dir, "meta")
	sv := []string{"--endpoint", "survey", "--survey-path", logPath, "--meta-dir", metaDir}
	backup := []string{"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "node1"}

	if out, errs, code := cli(t, cache, append([]string{"--backup-base", storeDir}, backup...)...); code != 0 {
		t.Fatalf("local backup: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code := cli(t, cache, append(sv, backup...)...)
	if code != 0 {
		t.Fatalf("survey backup: exit %d\n%s%s", code, out, errs)
	}
	names := regexp.MustCompile(`(?m)^Backup: (\S+)$`).FindAllStringSubmatch(out, -1)
	if len(names) == 0 {
		t.Fatalf("survey backup printed no backup names:\n%s", out)
	}

	// The survey's stored bytes against the local store's objects.
	lst, err := local.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	real, objects := storeBytes(t, lst)
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	events, err := survey.Parse(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	predicted := survey.Summarize(events, time.Time{}).FinalBytes()
	diff := float64(predicted-real) / float64(real)
	t.Logf("node %d bytes; local store %d bytes in %d objects; survey predicts %d bytes (%+.4f%%)",
		node.Bytes, real, objects, predicted, 100*diff)
	if math.Abs(diff) > 0.01 {
		t.Errorf("survey predicts %d bytes, the local store holds %d: %+.2f%%, want within 1%%", predicted, real, 100*diff)
	}

	// The meta dir lists the same objects at their logical sizes, and
	// holds a small fraction of the bytes.
	sst, err := survey.Open(filepath.Join(dir, "check.log"), metaDir)
	if err != nil {
		t.Fatal(err)
	}
	defer sst.Close()
	if listed, _ := storeBytes(t, sst); listed != predicted {
		t.Errorf("survey store lists %d bytes, its log says %d", listed, predicted)
	}
	mst, err := local.Open(metaDir)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk, _ := storeBytes(t, mst); onDisk > real/20 {
		t.Errorf("meta dir holds %d bytes, more than 5%% of the %d a real store holds", onDisk, real)
	}

	// list and show read the meta dir.
	name := names[0][1]
	day := name[:len("2006_01_02T15_04_05_000000")]
	out, errs, code = cli(t, cache, append(sv, "list", "--host", "node1", "--day", day)...)
	if code != 0 || !strings.Contains(out, name) {
		t.Errorf("survey list: exit %d, want 0 and %s in\n%s%s", code, name, out, errs)
	}
	out, errs, code = cli(t, cache, append(sv, "show", name)...)
	if code != 0 || !strings.HasPrefix(out, "Backup: "+name+"\n") || !strings.Contains(out, "Column Family: ") {
		t.Errorf("survey show: exit %d\n%s%s", code, out, errs)
	}

	// validate (without --checksum) and purge read manifests, indexes and
	// pack headers, which the meta dir has.
	out, errs, code = cli(t, cache, append(sv, "validate", "--host", "node1")...)
	if code != 0 || !strings.Contains(out, "All files present for backup "+name) {
		t.Errorf("survey validate: exit %d, want 0 and all files present\n%s%s", code, out, errs)
	}
	out, errs, code = cli(t, cache, append(sv, "purge", "--keep-days", "1", "--host", "node1", "--dry-run")...)
	if code != 0 {
		t.Errorf("survey purge --dry-run: exit %d\n%s%s", code, out, errs)
	}

	// A restore needs chunk data, which a survey never has.
	_, errs, code = cli(t, cache, append(sv, "restore", "--data-dir", filepath.Join(dir, "restored"), "--host", "node1", "--no-chown", "--fail-if-corrupt")...)
	if code != 1 || !strings.Contains(errs, "stores no data") {
		t.Errorf("survey restore: exit %d, want 1 and \"stores no data\" in\n%s", code, errs)
	}

	// survey-report reads the survey, including the lines of the commands
	// since the backup; purge left its small gc objects.
	held, _ := storeBytes(t, sst)
	// Extrapolate through the whole of next month.
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	after := next.AddDate(0, 1, 0)
	out, errs, code = cli(t, cache, "survey-report", logPath, "--extrapolate-to", after.Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("survey-report: exit %d\n%s", code, errs)
	}
	nextMonth := fmt.Sprintf("For Month %d-%d.\n", next.Year(), int(next.Month()))
	for _, want := range []string{"Hours\n", "Usage summary\n", "Requests\n", "Estimated monthly cost\n", nextMonth,
		"Prices (USD): $0.023 per GB-month, $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000 GET/HEAD/other, $0.09 per GB out"} {
		if !strings.Contains(out, want) {
			t.Errorf("survey-report: no %q in\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`at the final size \((\d+) bytes`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("survey-report: no final size in\n%s", out)
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n != held {
		t.Errorf("survey-report final size: got %d, want %d, what the survey store holds", n, held)
	}
	// Next month holds the final size for all its hours: byte-hours are
	// size × hours, GB-months size × hours / 2^30 / 744.
	hours := int64(after.Sub(next) / time.Hour)
	want := fmt.Sprintf("%sByte-Hours   : %25d\nGB-Months    : %25.6f\n", nextMonth, held*hours, float64(held)*float64(hours)/(1<<30)/744)
	if !strings.Contains(out, want) {
		t.Errorf("survey-report: no\n%s\nin\n%s", want, out)
	}
}

// TestSurveyUsage: the survey endpoint's options and survey-report's
// arguments are checked with one-line errors.
func TestSurveyUsage(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	logPath := filepath.Join(dir, "survey.log")
	bad := filepath.Join(dir, "bad.log")
	if err := os.WriteFile(bad, []byte("2026-11-26T01:02:03.000000Z stored config 3\n2026-11-26T01:02:04.000000Z stord config 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	metaDir := filepath.Join(dir, "meta")
	if err := os.Mkdir(metaDir, 0o755); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.log")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--endpoint", "survey", "--meta-dir", dir, "list"}, 2, "--survey-path is required"},
		{[]string{"--endpoint", "survey", "--survey-path", logPath, "list"}, 2, "--meta-dir is required"},
		{[]string{"--endpoint", "survey", "--survey-path", logPath, "--meta-dir", filepath.Join(dir, "none"), "list"}, 1, "no such directory"},
		{[]string{"--endpoint", "survey", "--survey-path", dir, "--meta-dir", metaDir, "list"}, 1, "not a regular file"},
		{[]string{"--endpoint", "survey", "--survey-path", logPath, "--meta-dir", dir, "list", "--host", "h"}, 1, "inside the meta dir"},
		{[]string{"survey-report"}, 2, "one survey file"},
		{[]string{"survey-report", bad, "--extrapolate-to", "teatime"}, 2, "--extrapolate-to"},
		{[]string{"survey-report", bad, "--price-put", "-1"}, 2, "--price-put"},
		{[]string{"survey-report", filepath.Join(dir, "missing.log")}, 1, "no such file"},
		{[]string{"survey-report", bad}, 1, "line 2: unknown operation \"stord\""},
		{[]string{"survey-report", empty}, 0, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, code := cli(t, cache, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errs, tc.code, tc.want)
			}
			if code != 0 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("error is not one line:\n%s", errs)
			}
			if code == 0 && out != "No activity in survey log "+empty+"\n" {
				t.Errorf("stdout: got %q", out)
			}
		})
	}
}
