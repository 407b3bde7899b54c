package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogFormatJSON: with --log-format json every log record is one JSON
// object per line with time, level and msg; a bad format is a usage error.
func TestLogFormatJSON(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	_, errs, code := cli(t, filepath.Join(dir, "cache"), "--log-format", "json", "--backup-base", filepath.Join(dir, "store"),
		"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")
	if code != 0 {
		t.Fatalf("backup of an empty data directory: exit %d, want 0\n%s", code, errs)
	}
	records := 0
	for _, line := range strings.Split(strings.TrimSpace(errs), "\n") {
		if strings.HasPrefix(line, "cassback: ") {
			continue // the one-line error, not a log record
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log record %q has no %q", line, k)
			}
		}
		records++
	}
	if records == 0 {
		t.Errorf("no log record; stderr:\n%s", errs)
	}
	if _, errs, code := cli(t, filepath.Join(dir, "cache"), "--log-format", "xml", "list"); code != 2 || !strings.Contains(errs, "--log-format") {
		t.Errorf("--log-format xml: exit %d, %q; want a usage error naming the option", code, errs)
	}
}
