package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/cassback/cassback/manifest/sstable"
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

// Limits of argument files. They keep a hostile or mistaken @file from
// costing more than a few MiB: without them one small file naming another
// ten times, eight deep, made 10^8 arguments (7.6 GB), and @/dev/urandom
// was read until memory ran out.
const (
	maxArgFileBytes = 1 << 20 // one argument file
	maxArgBytes     = 4 << 20 // all argument files read, each time one is read
	maxArgs         = 10000   // the command line's arguments and every line of every argument file
	maxArgDepth     = 8       // argument files open inside one another
)

// expandArgFiles replaces each "@file" argument by the lines of file, one
// argument per line, as the original cassback (Python argparse) did: a line
// is taken whole, so "--endpoint=s3" works and "--endpoint s3" is one bad
// argument. Blank lines are skipped. Argument files may name other
// argument files, up to maxArgDepth deep, but not themselves. Only regular
// files are read (a FIFO, a device or a directory is refused without
// waiting on it), and the limits above bound what expanding costs; breaking
// any of these is a usage error naming the file.
func expandArgFiles(args []string) ([]string, error) {
	if len(args) > maxArgs {
		return nil, usagef("more than %d arguments", maxArgs)
	}
	e := &argExpander{args: len(args)}
	return e.expand(args, nil)
}

// argExpander counts what expanding has cost so far.
type argExpander struct {
	args  int // arguments seen: the command line's and every line read
	bytes int // bytes of argument files read
}

// expand expands args; open holds the argument files being expanded,
// outermost first, to refuse a file that includes itself.
func (e *argExpander) expand(args []string, open []os.FileInfo) ([]string, error) {
	var out []string
	for _, a := range args {
		if len(a) < 2 || a[0] != '@' {
			out = append(out, a)
			continue
		}
		name := a[1:]
		lines, fi, err := e.read(name, open)
		if err != nil {
			return nil, err
		}
		sub, err := e.expand(lines, append(open, fi))
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// read returns the non-blank lines of the argument file name.
func (e *argExpander) read(name string, open []os.FileInfo) ([]string, os.FileInfo, error) {
	fail := func(format string, a ...any) ([]string, os.FileInfo, error) {
		return nil, nil, usagef("argument file %s: %s", name, fmt.Sprintf(format, a...))
	}
	if len(open) >= maxArgDepth {
		return fail("nested too deeply")
	}
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the type is
	// checked on what was opened (fstat), so nothing can be swapped in
	// between. O_NOCTTY: a terminal device never becomes ours.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fail("%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail("%v", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file (%s)", sstable.TypeName(fi.Mode()))
	}
	for _, o := range open {
		if os.SameFile(o, fi) {
			return fail("includes itself")
		}
	}
	if fi.Size() > maxArgFileBytes {
		return fail("larger than %d MiB", maxArgFileBytes>>20)
	}
	// The file may grow after the Stat: read no more than the limit allows.
	data, err := io.ReadAll(io.LimitReader(f, maxArgFileBytes+1))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fail("%v", err)
	}
	if len(data) > maxArgFileBytes {
		return fail("larger than %d MiB", maxArgFileBytes>>20)
	}
	if e.bytes += len(data); e.bytes > maxArgBytes {
		return fail("more than %d MiB of argument files in all", maxArgBytes>>20)
	}
	var lines []string
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if e.args++; e.args > maxArgs {
			return fail("more than %d arguments in all", maxArgs)
		}
		lines = append(lines, line)
	}
	return lines, fi, nil
}

// secretOnCommandLine reports whether args, as given to the process
// (argument files not yet expanded), set --aws-secret: every user of the
// machine can read them (ps, /proc/PID/cmdline), unlike the environment or
// a file. Only option-shaped arguments count, so a value that happens to
// read "--aws-secret" is a false alarm at worst.
func secretOnCommandLine(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if len(a) > 1 && a[0] == '-' && name == "aws-secret" {
			return true
		}
	}
	return false
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
