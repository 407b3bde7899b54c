package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// usageError marks errors in how cassback was called (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// expandArgFiles replaces each "@file" argument by the lines of file, one
// argument per line, as the original cassback (Python argparse) did: a line
// is taken whole, so "--endpoint=s3" works and "--endpoint s3" is one bad
// argument. Blank lines are skipped. Argument files may name other
// argument files, up to a small depth.
func expandArgFiles(args []string) ([]string, error) {
	return expandDepth(args, 0)
}

func expandDepth(args []string, depth int) ([]string, error) {
	var out []string
	for _, a := range args {
		if len(a) < 2 || a[0] != '@' {
			out = append(out, a)
			continue
		}
		if depth >= 8 {
			return nil, usagef("argument file %s: nested too deeply", a[1:])
		}
		f, err := os.Open(a[1:])
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, usagef("argument file %s: %v", a[1:], err)
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if strings.TrimSpace(line) == "" {
				continue
			}
			lines = append(lines, line)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, usagef("argument file %s: %v", a[1:], err)
		}
		sub, err := expandDepth(lines, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// listFlag is a repeatable flag that also accepts comma-separated lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// interleave lets options follow positional arguments, as the original's
// argparse did ("list ks --all"): it moves the subcommand's positional
// arguments after its options. args are the arguments after the global
// options; the first non-option is the subcommand.
func interleave(root *flag.FlagSet, subs map[string]*flag.FlagSet, args []string) []string {
	i := skipFlags(root, args)
	if i >= len(args) {
		return args
	}
	fs, ok := subs[args[i]]
	if !ok {
		return args
	}
	head := append([]string(nil), args[:i+1]...)
	var flags, pos []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			pos = append(pos, rest[j+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		if takesValue(fs, a) && j+1 < len(rest) {
			j++
			flags = append(flags, rest[j])
		}
	}
	out := append(head, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

// skipFlags returns the index of the first non-option argument for fs.
func skipFlags(fs *flag.FlagSet, args []string) int {
	for j := 0; j < len(args); j++ {
		a := args[j]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return j
		}
		if takesValue(fs, a) {
			j++
		}
	}
	return len(args)
}

// takesValue reports whether option a ("-x", "--x", without "=") is
// followed by a separate value argument.
func takesValue(fs *flag.FlagSet, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}
