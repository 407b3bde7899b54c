package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/survey"
)

func surveyReportCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var (
		to     string
		all    bool
		prices = survey.DefaultPrices
	)
	fs := flag.NewFlagSet("cassback survey-report", flag.ContinueOnError)
	fs.StringVar(&to, "extrapolate-to", "", "extend the report to this time, holding the last size (UTC unless it has a zone; default: now)")
	fs.BoolVar(&all, "show-extrapolations", false, "list every hour, not only hours with activity")
	fs.Float64Var(&prices.StorageGBMonth, "price-gb-month", prices.StorageGBMonth, "dollars per GB-month stored")
	fs.Float64Var(&prices.PutPer1000, "price-put", prices.PutPer1000, "dollars per 1,000 PUT, COPY, POST and LIST requests")
	fs.Float64Var(&prices.GetPer1000, "price-get", prices.GetPer1000, "dollars per 1,000 GET, HEAD and other requests")
	fs.Float64Var(&prices.TransferOutGB, "price-transfer-out", prices.TransferOutGB, "dollars per GB transferred out")
	return &ffcli.Command{
		Name:       "survey-report",
		ShortUsage: "cassback [global options] survey-report SURVEY_PATH [--extrapolate-to DATE] [--show-extrapolations] [price options]",
		ShortHelp:  "report what backups would cost from a survey log",
		LongHelp: `Reads the file a survey (--endpoint survey --survey-path FILE --meta-dir DIR)
wrote and prints, as the original cassback did, the bytes stored and
transferred in each hour with activity (every hour with
--show-extrapolations) and per month the byte-hours, GB-months (byte-hours
/ 2^30 / 744) and GB transferred in and out; then the requests of each
month by kind and their estimated cost. A LIST request returns up to 1,000
keys. The hours are extended to --extrapolate-to (default: now), keeping
the last size, so a survey of one backup shows what keeping it costs.

The default prices are the public list prices of Amazon S3 Standard in
us-east-1 as listed in 2025 (https://aws.amazon.com/s3/pricing/; check
it before relying on them): $0.023 per GB-month (first 50 TB), $0.005 per 1,000 PUT,
COPY, POST and LIST requests, $0.0004 per 1,000 GET and other requests, and
$0.09 per GB transferred out to the internet (first 10 TB). DELETE requests
and transfer in are free. A GB is 2^30 bytes. Tiers, free allowances and
taxes are not modelled.`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("survey-report takes one survey file, got %d arguments", len(args))
			}
			if err := g.checkLimits(); err != nil {
				return err
			}
			until := time.Now().UTC()
			if to != "" {
				t, err := manifest.ParseTime(to)
				if err != nil {
					return usagef("--extrapolate-to: %v", err)
				}
				until = t
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("survey-report: %w", err)
			}
			defer f.Close()
			events, err := survey.Parse(f)
			if err != nil {
				return fmt.Errorf("survey-report %s: %w", args[0], err)
			}
			if len(events) == 0 {
				fmt.Fprintf(g.stdout, "No activity in survey log %s\n", args[0])
				return nil
			}
			if err := checkReportSpan(events, args[0], to, until); err != nil {
				return err
			}
			return survey.Summarize(events, until).Write(g.stdout, prices, all)
		},
	}
}

// maxReportHours bounds the hours a survey report covers (10 years, about
// 5.6 MB of hours): a line dated far from the others, or an --extrapolate-to
// centuries ahead, would otherwise make millions of them.
const maxReportHours = 10 * 366 * 24

// checkReportSpan refuses a report that would cover more than
// maxReportHours from the first line of the survey file to its last line
// (a failure, naming the file) or to until (a usage error: --extrapolate-to,
// or now when none was given).
func checkReportSpan(events []survey.Event, file, to string, until time.Time) error {
	first, last := events[0].Time, events[0].Time
	for _, e := range events {
		if e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	tooLong := func(t time.Time) bool { return t.Sub(first) > maxReportHours*time.Hour }
	what := fmt.Sprintf("the report would cover more than 10 years (%d hours) from the survey's first line at %s",
		maxReportHours, first.UTC().Format(time.RFC3339))
	switch {
	case tooLong(last):
		return fmt.Errorf("survey-report %s: %s", file, what)
	case tooLong(until) && to != "":
		return usagef("--extrapolate-to %s: %s", to, what)
	case tooLong(until):
		return usagef("%s to now: give an earlier --extrapolate-to", what)
	}
	return nil
}
