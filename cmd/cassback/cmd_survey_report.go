package main

import (
	"context"
	"errors"
	"flag"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func surveyReportCmd(g *globals, opts []ff.Option) *ffcli.Command {
	fs := flag.NewFlagSet("cassback survey-report", flag.ContinueOnError)
	fs.String("extrapolate-to", "", "extrapolate usage to this time")
	fs.Bool("show-extrapolations", false, "show extrapolated hours")
	return &ffcli.Command{
		Name: "survey-report", ShortUsage: "cassback [global options] survey-report SURVEY_PATH [--extrapolate-to DATE] [--show-extrapolations]",
		ShortHelp: "report what backups would cost from a survey log (not available in this version)",
		FlagSet:   fs, Options: opts,
		Exec: func(context.Context, []string) error {
			return errors.New("survey-report is not available in this version")
		},
	}
}
