package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// A schema maps the path of every field of a --json document ("a",
// "a.b", "a[].b") to its type, as docs/cli.md's "JSON output" tables give
// them.
type schema map[string]string

// jsonSchemas reads every table below "## JSON output" in docs/cli.md, by
// the heading above it ("list", "list --hosts", "backup, one-shot", ...).
func jsonSchemas(t *testing.T) map[string]schema {
	t.Helper()
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## JSON output\n")
	if !ok {
		t.Fatal(`docs/cli.md has no "## JSON output" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	out := map[string]schema{}
	var cur schema
	for line := range strings.SplitSeq(sec, "\n") {
		if name, ok := strings.CutPrefix(line, "### "); ok {
			cur = schema{}
			out[name] = cur
			continue
		}
		cells := strings.Split(line, "|")
		if cur == nil || len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		path := strings.Trim(strings.TrimSpace(cells[1]), "`")
		cur[path] = strings.TrimSpace(cells[2])
	}
	return out
}

// checkJSON checks that out is exactly one JSON document, that it decodes
// into v (a pointer to the command's document type) with no field v lacks,
// and that it follows s: every field s lists is present with its type —
// in every element of an array, and in an "object or null" when it is an
// object — and no field is missing from s. It adds the paths seen to seen.
func checkJSON(t *testing.T, what, out string, s schema, v any, seen map[string]bool) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: stdout does not decode into %T: %v\n%s", what, v, err, out)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) > 0 {
		t.Fatalf("%s: more than one JSON document on stdout:\n%s", what, out)
	}
	var doc any
	dec = json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, err := range walkSchema(doc, "", s, seen) {
		t.Errorf("%s: %v", what, err)
	}
	if m, ok := doc.(map[string]any); !ok || m["version"] != json.Number("1") {
		t.Errorf("%s: version is not 1", what)
	}
}

// walkSchema checks the object v, whose fields' paths begin with prefix,
// against s, and returns what is wrong.
func walkSchema(v any, prefix string, s schema, seen map[string]bool) []error {
	obj, ok := v.(map[string]any)
	if !ok {
		return []error{fmt.Errorf("%q: not an object", prefix)}
	}
	var errs []error
	for _, path := range slices.Sorted(maps.Keys(s)) {
		rest, ok := strings.CutPrefix(path, prefix)
		if !ok || strings.ContainsAny(rest, ".[") {
			continue
		}
		if _, ok := obj[rest]; !ok {
			errs = append(errs, fmt.Errorf("field %s is missing", path))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		path := prefix + k
		typ, ok := s[path]
		if !ok {
			errs = append(errs, fmt.Errorf("field %s is not in docs/cli.md", path))
			continue
		}
		seen[path] = true
		if err := checkType(obj[k], typ); err != nil {
			errs = append(errs, fmt.Errorf("field %s: %v", path, err))
			continue
		}
		switch x := obj[k].(type) {
		case map[string]any:
			errs = append(errs, walkSchema(x, path+".", s, seen)...)
		case []any:
			if typ == "array of objects" {
				for _, e := range x {
					errs = append(errs, walkSchema(e, path+"[].", s, seen)...)
				}
			}
		}
	}
	return errs
}

// checkType checks a value decoded with UseNumber against a type of the
// docs' vocabulary.
func checkType(v any, typ string) error {
	ok := false
	switch typ {
	case "string":
		_, ok = v.(string)
	case "boolean":
		_, ok = v.(bool)
	case "number":
		_, ok = v.(json.Number)
	case "integer":
		n, isNum := v.(json.Number)
		_, err := n.Int64()
		ok = isNum && err == nil
	case "time":
		str, isStr := v.(string)
		_, err := time.Parse(time.RFC3339Nano, str)
		ok = isStr && err == nil && strings.HasSuffix(str, "Z")
	case "object":
		_, ok = v.(map[string]any)
	case "object or null":
		_, ok = v.(map[string]any)
		ok = ok || v == nil
	case "array of strings", "array of objects":
		a, isArr := v.([]any)
		ok = isArr
		for _, e := range a {
			if typ == "array of strings" {
				_, isStr := e.(string)
				ok = ok && isStr
			} else {
				_, isObj := e.(map[string]any)
				ok = ok && isObj
			}
		}
	default:
		return fmt.Errorf("docs/cli.md gives the unknown type %q", typ)
	}
	if !ok {
		return fmt.Errorf("got %#v, want %s", v, typ)
	}
	return nil
}

// TestCheckSchema checks the schema check itself on small documents.
func TestCheckSchema(t *testing.T) {
	s := schema{"version": "integer", "a": "array of objects", "a[].t": "time", "o": "object or null", "o.n": "number"}
	for _, tc := range []struct {
		doc   string
		wrong int
	}{
		{`{"version":1,"a":[{"t":"2026-01-02T03:04:05.5Z"}],"o":{"n":1.5}}`, 0},
		{`{"version":1,"a":[],"o":null}`, 0},
		{`{"version":1.5,"a":[],"o":null}`, 1},                                // not an integer
		{`{"version":1,"a":[{"t":"yesterday"}],"o":null}`, 1},                 // not a time
		{`{"version":1,"a":[{"t":"2026-01-02T03:04:05+01:00"}],"o":null}`, 1}, // not UTC
		{`{"version":1,"a":null,"o":null}`, 1},                                // null, not an array
		{`{"version":1,"a":[{}],"o":{}}`, 2},                                  // a[].t and o.n missing
		{`{"version":1,"a":[],"o":null,"extra":true}`, 1},                     // not documented
	} {
		var doc any
		dec := json.NewDecoder(strings.NewReader(tc.doc))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if errs := walkSchema(doc, "", s, map[string]bool{}); len(errs) != tc.wrong {
			t.Errorf("%s: got %d errors %v, want %d", tc.doc, len(errs), errs, tc.wrong)
		}
	}
}

// statusRegistered reports whether root.go's commands include status.
func statusRegistered() bool {
	var root *ffcli.Command
	return slices.ContainsFunc(commands(&globals{}, nil, &root), func(c *ffcli.Command) bool { return c.Name == "status" })
}

// cliStatus runs "cassback [global options] status ..." as cli does. Until
// root.go's commands() lists status, it runs it as run would: the global
// options, setup (and so the option ranges), the command's own options, and
// the exit status and one-line error of exitCode.
func cliStatus(t *testing.T, cache string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if statusRegistered() {
		return cli(t, cache, args...)
	}
	var out, errb bytes.Buffer
	args = append([]string{"--log-file", "-", "--cache-dir", cache}, args...)
	g := &globals{stdout: &out, stderr: &errb, closeLog: func() {}}
	rootFS := flag.NewFlagSet("cassback", flag.ContinueOnError)
	rootFS.SetOutput(io.Discard)
	g.register(rootFS)
	cmd := statusCmd(g, nil)
	cmd.FlagSet.SetOutput(io.Discard)
	g.flagSets = map[string]*flag.FlagSet{"": rootFS, "status": cmd.FlagSet}
	root := &ffcli.Command{Name: "cassback", FlagSet: rootFS, Subcommands: []*ffcli.Command{cmd}}
	err := root.Parse(interleave(rootFS, map[string]*flag.FlagSet{"status": cmd.FlagSet}, args))
	if err != nil {
		err = usagef("%s", strings.TrimPrefix(err.Error(), "error parsing commandline arguments: "))
	} else {
		err = root.Run(t.Context())
	}
	g.closeLog()
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}
