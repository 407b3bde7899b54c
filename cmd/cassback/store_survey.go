package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/survey"
)

// openSurvey opens the survey endpoint: a store that keeps everything but
// pack data in --meta-dir and logs every operation to --survey-path. A
// backup creates --meta-dir; other commands need it to exist.
func (g *globals) openSurvey(create bool) (remote.Store, error) {
	if g.surveyPath == "" {
		return nil, usagef("--survey-path is required with --endpoint survey")
	}
	if g.metaDir == "" {
		return nil, usagef("--meta-dir is required with --endpoint survey")
	}
	if !create {
		fi, err := os.Stat(g.metaDir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("--meta-dir %s: no such directory", g.metaDir)
		case err != nil:
			return nil, fmt.Errorf("--meta-dir %s: %w", g.metaDir, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("--meta-dir %s: not a directory", g.metaDir)
		}
	}
	st, err := survey.Open(g.surveyPath, g.metaDir)
	if err != nil {
		return nil, err
	}
	// Sync the survey file when the command ends; run calls closeLog last.
	closeLog := g.closeLog
	g.closeLog = func() {
		if err := st.Close(); err != nil && g.log != nil {
			g.log.Warn("survey file not synced", "path", g.surveyPath, "err", err)
		}
		closeLog()
	}
	return st, nil
}
