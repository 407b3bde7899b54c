package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/throttle"
)

// globals holds the options that come before the subcommand.
type globals struct {
	endpoint         string
	backupBase       string
	cacheDir         string
	cassandraVersion string
	logLevel         string
	logFile          string
	logFormat        string
	progress         string
	progressOn       bool // the progress reporter started

	// S3 options.
	awsKey, awsSecret, bucket, keyPrefix string
	maxUploadMB, multipartMB, retries    int
	s3Endpoint, s3Region, s3CAFile       string
	s3SSE, s3SSEKMSKeyID, s3StorageClass string
	s3RequestTimeout                     time.Duration
	// Survey options.
	surveyPath, metaDir string
	// Key sources of an encrypted store (keys.go).
	keys keyFlags
	// Garbage-collection protocol timings (docs/design.md §4).
	gcHeartbeat, gcLease time.Duration
	// Throttling (store.go): the rates as given, and the one Limiter of
	// the process that setup builds from them.
	maxUploadRate, maxDownloadRate string
	maxRequestsPerSec              float64
	limiter                        *throttle.Limiter
	// Metrics and health (metrics.go); stats is nil without --metrics-addr.
	metricsAddr  string
	healthMaxRPO time.Duration
	stats        *cassback.Stats

	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	closeLog       func()

	// flagSets holds the option sets by command ("" for the global
	// options), for checkLimits.
	flagSets map[string]*flag.FlagSet
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cassback")
	}
	return filepath.Join(os.TempDir(), "cassback-cache")
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.endpoint, "endpoint", "local", "where backups are stored: local, s3 or survey")
	fs.StringVar(&g.backupBase, "backup-base", "", "local endpoint: the store's folder (created by the first backup)")
	fs.StringVar(&g.cacheDir, "cache-dir", defaultCacheDir(), "local cache of index files and the upload journal; losing it costs only time")
	fs.StringVar(&g.cassandraVersion, "cassandra-version", "auto", "Cassandra version of the node, recorded in manifests (file names of every version from 1.0 to 5.0 are recognised automatically)")
	fs.StringVar(&g.logLevel, "log-level", "INFO", "logging level: FATAL, CRITICAL, ERROR, WARN, INFO or DEBUG")
	fs.StringVar(&g.logFile, "log-file", "/var/log/cassback/cassback.log", "log file; - for standard error")
	fs.StringVar(&g.logFormat, "log-format", "text", "log records as text (key=value) or json (one object per line)")
	fs.StringVar(&g.progress, "progress", "auto", "progress of one-shot backup, restore, validate and purge: a live line on standard error (auto: when it is a terminal; always), else a log record every 30 s; never")
	fs.StringVar(&g.awsKey, "aws-key", "", "s3 endpoint: access key ID (default: the AWS SDK's credential chain: environment, shared config, instance or pod role)")
	fs.StringVar(&g.awsSecret, "aws-secret", "", "s3 endpoint: secret access key, with --aws-key (better given as CASSBACK_AWS_SECRET or in an @file)")
	fs.StringVar(&g.bucket, "bucket-name", "", "s3 endpoint: bucket (must exist)")
	fs.StringVar(&g.keyPrefix, "key-prefix", "", "s3 endpoint: prefix of every key, so that several stores can share a bucket")
	fs.IntVar(&g.maxUploadMB, "max-upload-size-mb", 5120, "s3 endpoint: objects up to this size (MiB, at most 5120) go in one PUT, larger ones by multipart upload")
	fs.IntVar(&g.multipartMB, "multipart-chunk-size-mb", 256, "s3 endpoint: multipart part size in MiB (at least 5)")
	fs.IntVar(&g.retries, "retries", 5, "s3 endpoint: how many times a failed request is retried (throttling, server errors, timeouts, broken connections), with exponential backoff")
	fs.StringVar(&g.s3Endpoint, "s3-endpoint", "", "s3 endpoint: URL of an S3-compatible server (MinIO, Ceph RGW, ...), addressed path-style; default AWS")
	fs.StringVar(&g.s3Region, "s3-region", "", "s3 endpoint: region (default: AWS_REGION or the shared config, else us-east-1)")
	fs.StringVar(&g.s3CAFile, "s3-ca-file", "", "s3 endpoint: PEM file of CA certificates to trust besides the system's")
	fs.StringVar(&g.s3SSE, "s3-sse", "", "s3 endpoint: server-side encryption of every object written: AES256 (SSE-S3), aws:kms or aws:kms:dsse (SSE-KMS); default: none asked, the bucket's default applies")
	fs.StringVar(&g.s3SSEKMSKeyID, "s3-sse-kms-key-id", "", "s3 endpoint: KMS key (ID, ARN or alias) of --s3-sse aws:kms; default: the bucket's or the account's aws/s3 key")
	fs.StringVar(&g.s3StorageClass, "s3-storage-class", "", "s3 endpoint: storage class of pack objects (packs/, the bulk of the data): STANDARD_IA, INTELLIGENT_TIERING, ONEZONE_IA, GLACIER_IR, ...; metadata (index, manifests, markers, sessions, config) stays STANDARD, being small, read often and written conditionally; default STANDARD")
	fs.DurationVar(&g.s3RequestTimeout, "s3-request-timeout", time.Minute, "s3 endpoint: a request that makes no progress for this long is cancelled and retried")
	fs.DurationVar(&g.gcHeartbeat, "session-heartbeat", 5*time.Minute, "how often a backup or restore renews its session in the store")
	fs.DurationVar(&g.gcLease, "session-lease", 30*time.Minute, "a session (or purge) not renewed for this long is stale and may be revoked by purge")
	g.keys.register(fs)
	fs.StringVar(&g.surveyPath, "survey-path", "", "survey endpoint: file the operations are logged to")
	fs.StringVar(&g.metaDir, "meta-dir", "", "survey endpoint: folder for the metadata a real store would hold")
	fs.StringVar(&g.maxUploadRate, "max-upload-rate", "", "most bytes per second written to the store (packs, manifests, everything), for all threads together: 50MB/s, 400Mbit/s, 1GiB/s; 0 or empty: no limit")
	fs.StringVar(&g.maxDownloadRate, "max-download-rate", "", "most bytes per second read from the store, for all threads together: 50MB/s, 400Mbit/s, 1GiB/s; 0 or empty: no limit")
	fs.Float64Var(&g.maxRequestsPerSec, "max-requests-per-sec", 0, "most store requests per second, of every kind, for all threads together; 0: no limit")
	fs.StringVar(&g.metricsAddr, "metrics-addr", "", "serve Prometheus metrics (/metrics) and a health check (/healthz) on HOST:PORT while the command runs; empty: off")
	fs.DurationVar(&g.healthMaxRPO, "health-max-rpo", 15*time.Minute, "/healthz fails when the oldest SSTable not yet in a committed manifest is older than this; 0: not checked")
}

var levels = map[string]slog.Level{
	"FATAL": slog.LevelError + 4, "CRITICAL": slog.LevelError + 4, "ERROR": slog.LevelError,
	"WARN": slog.LevelWarn, "WARNING": slog.LevelWarn, "INFO": slog.LevelInfo, "DEBUG": slog.LevelDebug,
}

// setup validates the global options and opens the log.
func (g *globals) setup() error {
	lvl, ok := levels[strings.ToUpper(g.logLevel)]
	if !ok {
		return usagef("--log-level %q: want one of FATAL, CRITICAL, ERROR, WARN, INFO, DEBUG", g.logLevel)
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		return usagef("--log-format %q: want text or json", g.logFormat)
	}
	if g.progress != "auto" && g.progress != "always" && g.progress != "never" {
		return usagef("--progress %q: want auto, always or never", g.progress)
	}
	switch g.endpoint {
	case "local", "s3", "survey":
	default:
		return usagef("--endpoint %q: want local, s3 or survey", g.endpoint)
	}
	if g.endpoint == "s3" {
		// The s3 options' own checks first: they say why (S3's limits).
		if _, _, err := g.s3Config(); err != nil {
			return err
		}
	}
	if err := g.checkLimits(); err != nil {
		return err
	}
	if err := g.setupThrottle(); err != nil {
		return err
	}
	var w io.Writer = g.stderr
	g.closeLog = func() {}
	var warn string
	if g.logFile != "-" && g.logFile != "" {
		f, err := openLog(g.logFile)
		if err != nil {
			warn = fmt.Sprintf("cannot open log file %s (%v); logging to standard error", g.logFile, err)
		} else {
			w = f
			g.closeLog = func() { f.Close() }
		}
	}
	if g.logFormat == "json" {
		g.log = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
	} else {
		g.log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
	}
	if warn != "" {
		g.log.Warn(warn)
	}
	return nil
}

func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// repo opens the store and its index. Only a backup creates a store, and
// only in an empty or new folder.
func (g *globals) repo(ctx context.Context, create bool) (*cassback.Repo, error) {
	if err := g.startMetrics(); err != nil {
		return nil, err
	}
	g.startProgress()
	st, err := g.store(ctx, create)
	if err != nil {
		return nil, err
	}
	if g.stats != nil {
		st = remote.NewObserved(st, g.stats.ObserveRequest)
	}
	if g.gcHeartbeat <= 0 || g.gcLease < 3*g.gcHeartbeat {
		return nil, usagef("--session-lease (%v) must be at least three --session-heartbeat (%v)", g.gcLease, g.gcHeartbeat)
	}
	keys, err := g.storeKeys(ctx)
	if err != nil {
		return nil, err
	}
	o := cassback.Options{CacheRoot: g.cacheDir, Log: g.log, Keys: keys}
	if create {
		// A backup: its config may come from the cache (configcache.go).
		o.Location = g.identity()
	}
	r, err := cassback.Open(ctx, st, o)
	if cassback.IsNotStore(err) && create {
		// No config: a store is created only where nothing is stored yet
		// (a folder or bucket of something else is not taken over). A
		// store with a config costs no listing.
		empty, eerr := storeEmpty(ctx, st)
		if eerr != nil {
			return nil, eerr
		}
		if empty {
			r, err = cassback.Open(ctx, st, cassback.Options{CacheRoot: g.cacheDir, Create: true, Log: g.log, Keys: keys})
		}
	}
	if cassback.IsNotStore(err) {
		return nil, fmt.Errorf("%s is not a cassback store (it has no config object)", g.location())
	}
	if err != nil {
		return nil, err
	}
	r.GC.Heartbeat, r.GC.Lease = g.gcHeartbeat, g.gcLease
	r.Stats = g.stats
	return r, nil
}

// identity names the store for the config cache: what tells two stores
// apart (an S3 server's URL and region too, a folder by its absolute path).
func (g *globals) identity() string {
	switch g.endpoint {
	case "s3":
		return strings.Join([]string{"s3", g.s3Endpoint, g.s3Region, g.bucket, g.keyPrefix}, "\x00")
	}
	loc := g.location() // a folder
	if abs, err := filepath.Abs(loc); err == nil {
		loc = abs
	}
	return g.endpoint + "\x00" + loc
}

func (g *globals) location() string {
	switch g.endpoint {
	case "local":
		return g.backupBase
	case "s3":
		return strings.TrimSuffix("s3://"+g.bucket+"/"+g.keyPrefix, "/")
	}
	return g.metaDir
}

func storeEmpty(ctx context.Context, st remote.Store) (bool, error) {
	empty := true
	err := st.List(ctx, "", func(remote.Info) error { empty = false; return remote.ErrStop })
	if errors.Is(err, remote.ErrStop) {
		err = nil
	}
	return empty, err
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkHost(h string) error {
	if !hostRE.MatchString(h) || strings.Contains(h, "..") {
		return usagef("--host %.300q: a host name is letters, digits, '.', '_' and '-'", h)
	}
	if len(h) > manifest.MaxHostLen {
		return usagef("--host %.300q: %d bytes, more than %d (a backup name holds the host and the keyspace in 255 bytes)", h, len(h), manifest.MaxHostLen)
	}
	return nil
}

// defaultHost returns the fully qualified name of this machine when it can
// be found quickly (from /etc/hosts or DNS within a second), else its name.
func defaultHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	if strings.Contains(h, ".") {
		return h
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if addrs, err := net.DefaultResolver.LookupHost(ctx, h); err == nil {
		for _, a := range addrs {
			names, err := net.DefaultResolver.LookupAddr(ctx, a)
			if err != nil {
				continue
			}
			for _, n := range names {
				n = strings.TrimSuffix(n, ".")
				if strings.HasPrefix(n, h+".") {
					return n
				}
			}
		}
	}
	return h
}

// maxThreads bounds every --threads. Memory grows with it: a backup thread
// holds up to a pack and a chunk buffer (about 48 MiB), a restore or
// validate thread one merged ranged read (up to 64 MiB).
const maxThreads = 64

// A limit is the range a numeric option accepts, in the option's own type
// (int, float64 or time.Duration). Limits keep one invocation from taking
// unbounded memory or overflowing a computation: --threads 1000000 took
// 2.9 GB, --session-heartbeat 1000000h overflowed the lease check (three
// heartbeats), --keep-days 200000 overflowed into a cut-off in the future,
// a NaN interval passed every "positive" check. Every numeric option of
// every command has one (TestEveryNumericOptionLimited), and docs/cli.md
// lists them.
type limit struct{ lo, hi any }

// limits holds the limits by command ("" for the global options) and
// option name.
var limits = map[string]map[string]limit{
	"": {
		"max-upload-size-mb":      {1, 5120},
		"multipart-chunk-size-mb": {5, 5120},
		"retries":                 {0, 100},
		"s3-request-timeout":      {time.Second, time.Hour},
		"session-heartbeat":       {100 * time.Millisecond, 24 * time.Hour},
		"session-lease":           {300 * time.Millisecond, 7 * 24 * time.Hour},
		"max-requests-per-sec":    {0.0, 100000.0},
		"health-max-rpo":          {time.Duration(0), 365 * 24 * time.Hour},
	},
	"backup": {
		"threads":                {1, maxThreads},
		"report-interval-secs":   {0, 86400},
		"manifest-interval-secs": {0.01, 86400.0},
		"drain-timeout":          {time.Duration(0), 24 * time.Hour},
	},
	"restore": {
		"threads":              {1, maxThreads},
		"report-interval-secs": {0, 86400},
	},
	"validate": {
		"threads": {1, maxThreads},
	},
	"purge": {
		"keep-days":        {0, 36500},
		"grace":            {time.Duration(0), 365 * 24 * time.Hour},
		"new-pack-margin":  {time.Duration(0), 365 * 24 * time.Hour},
		"scan-every":       {time.Duration(0), 365 * 24 * time.Hour},
		"repack-threshold": {0.01, 1.0},
		"purge-memory-mb":  {1, 1 << 20},
	},
	"status": {
		"stale-after": {time.Minute, 87600 * time.Hour},
	},
	"check-store": {
		"rounds": {1, 1000},
		"racers": {2, 256},
	},
	"survey-report": {
		"price-gb-month":     {0.0, 1e6},
		"price-put":          {0.0, 1e6},
		"price-get":          {0.0, 1e6},
		"price-transfer-out": {0.0, 1e6},
	},
}

// checkLimits checks every numeric option given (on the command line, in
// an argument file or in the environment) against its limit; defaults are
// within them.
func (g *globals) checkLimits() error {
	for _, cmd := range slices.Sorted(maps.Keys(g.flagSets)) {
		var err error
		g.flagSets[cmd].Visit(func(f *flag.Flag) {
			l, ok := limits[cmd][f.Name]
			if err != nil || !ok {
				return
			}
			err = l.check(f.Name, f.Value.(flag.Getter).Get())
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// check returns a usage error naming the option and its range when v, of
// the type of l's bounds, is out of range (NaN always is).
func (l limit) check(name string, v any) error {
	var ok bool
	switch v := v.(type) {
	case int:
		ok = l.lo.(int) <= v && v <= l.hi.(int)
	case float64:
		ok = l.lo.(float64) <= v && v <= l.hi.(float64)
	case time.Duration:
		ok = l.lo.(time.Duration) <= v && v <= l.hi.(time.Duration)
	}
	if !ok {
		return usagef("--%s %s: want %s to %s", name, limitText(v), limitText(l.lo), limitText(l.hi))
	}
	return nil
}

// limitText formats a value or bound: durations without trailing zero
// units ("24h", not "24h0m0s"), floats in their shortest form.
func limitText(v any) string {
	switch v := v.(type) {
	case time.Duration:
		s := v.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.FormatFloat(v, 'f', -1, 64) // 1000000, not 1e+06
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// commands builds every subcommand; root is filled in by the caller.
func commands(g *globals, opts []ff.Option, root **ffcli.Command) []*ffcli.Command {
	cmds := []*ffcli.Command{
		backupCmd(g, opts), restoreCmd(g, opts), listCmd(g, opts), showCmd(g, opts), statusCmd(g, opts),
		validateCmd(g, opts), purgeCmd(g, opts), surveyReportCmd(g, opts), checkStoreCmd(g, opts), repairIndexCmd(g, opts),
		initCmd(g, opts), keyCmd(g, opts),
	}
	return append(cmds, helpCmd(g, root, cmds))
}

// run is the whole program: main only wires os.Args, the environment and stdio.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	if err := refuseSecretFlags(args, "passphrase", "new-passphrase"); err != nil {
		return err
	}
	secretShown := secretOnCommandLine(args)
	args, err = expandArgFiles(args)
	if err != nil {
		return err
	}
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, closeLog: func() {}}
	rootFS := flag.NewFlagSet("cassback", flag.ContinueOnError)
	rootFS.SetOutput(stderr)
	g.register(rootFS)

	opts := []ff.Option{ff.WithEnvVarPrefix("CASSBACK")}
	var root *ffcli.Command
	cmds := commands(g, opts, &root)
	g.flagSets = map[string]*flag.FlagSet{"": rootFS}
	for _, c := range cmds {
		g.flagSets[c.Name] = c.FlagSet
	}
	root = &ffcli.Command{
		Name:        "cassback",
		ShortUsage:  "cassback [global options] <command> [options] [args]",
		ShortHelp:   "cassback - snap, slurp, purge",
		LongHelp:    rootHelp,
		FlagSet:     rootFS,
		Options:     opts,
		Subcommands: cmds,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q (see cassback help)", args[0])
			}
			fmt.Fprint(stderr, ffcli.DefaultUsageFunc(root))
			return usagef("no command given")
		},
	}
	// The flag package prints an error and the whole usage on a bad flag;
	// keep that aside and show it only when help was asked for, so a bad
	// flag is reported on one line.
	var usage bytes.Buffer
	rootFS.SetOutput(&usage)
	for _, c := range cmds {
		c.FlagSet.SetOutput(&usage)
	}
	subs := map[string]*flag.FlagSet{}
	for _, c := range cmds {
		subs[c.Name] = c.FlagSet
	}
	if err := root.Parse(interleave(rootFS, subs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = usage.WriteTo(stdout)
			return nil
		}
		return usagef("%s", strings.TrimPrefix(err.Error(), "error parsing commandline arguments: "))
	}
	if secretShown {
		fmt.Fprintln(stderr, "cassback: warning: --aws-secret on the command line is visible to every user of this machine (ps); set CASSBACK_AWS_SECRET or put --aws-secret=... in an @file argument file (mode 0600) instead")
	}
	defer func() { g.closeLog() }()
	return root.Run(ctx)
}

const rootHelp = `cassback runs beside each Cassandra node and backs up its SSTables into a
deduplicated, content-addressed store (a local folder, or an S3 bucket that
many nodes share), and restores a node, keyspace or table as of any backup.

Global options come before the command. Every option can also be given in
an environment variable CASSBACK_<NAME> (for example CASSBACK_BACKUP_BASE),
and arguments can be read from a file with @FILE, one argument per line.

Exit status: 0 success, 1 failure, 2 usage error.`
