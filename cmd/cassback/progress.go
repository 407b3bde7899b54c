package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/cassback/cassback"
)

// progressEvery is how often the live line is redrawn; logEvery how often
// a progress record is logged when standard error is not a terminal.
const (
	progressEvery = 200 * time.Millisecond
	logEvery      = 30 * time.Second
)

// startProgress shows the progress of a one-shot backup, restore, validate
// or purge while the command runs: one live line on standard error when it
// is a terminal (--progress auto) or always (--progress always), else a log
// record every 30 seconds; nothing with --progress never. It makes the
// command's Stats if --metrics-addr did not. It starts once per command;
// setup checked --progress.
func (g *globals) startProgress() {
	if g.progressOn {
		return
	}
	g.progressOn = true
	tty := false
	if f, ok := g.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	if g.progress == "never" {
		return
	}
	live := g.progress == "always" || tty
	if g.stats == nil {
		g.stats = cassback.NewStats()
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if live {
			g.drawProgress(stop)
		} else {
			g.logProgress(stop)
		}
	}()
	prev := g.closeLog
	g.closeLog = func() {
		close(stop)
		<-done
		prev()
	}
}

// drawProgress redraws the live line until stop closes.
func (g *globals) drawProgress(stop <-chan struct{}) {
	var bar *progressbar.ProgressBar
	var shown *cassback.Progress
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			if bar != nil {
				bar.Set64(shown.BytesDone.Load())
				fmt.Fprintln(g.stderr)
			}
			return
		case <-tick.C:
		}
		p := g.stats.Progress()
		if p == nil {
			continue
		}
		if p != shown {
			if bar != nil {
				fmt.Fprintln(g.stderr)
			}
			shown = p
			bar = progressbar.NewOptions64(max(1, p.BytesTotal.Load()), progressbar.OptionSetWriter(g.stderr),
				progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetWidth(30), progressbar.OptionThrottle(progressEvery))
		}
		if total := p.BytesTotal.Load(); total > 0 {
			bar.ChangeMax64(total)
		}
		bar.Describe(fmt.Sprintf("%s %d/%d files", p.Operation, p.FilesDone.Load(), p.FilesTotal.Load()))
		bar.Set64(p.BytesDone.Load())
	}
}

// logProgress logs a progress record every logEvery until stop closes.
func (g *globals) logProgress(stop <-chan struct{}) {
	start := time.Now()
	tick := time.NewTicker(logEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		p := g.stats.Progress()
		if p == nil {
			continue
		}
		done := p.BytesDone.Load()
		rate := float64(done) / time.Since(start).Seconds()
		g.log.Info("progress", "operation", p.Operation, "files_done", p.FilesDone.Load(), "files_total", p.FilesTotal.Load(),
			"bytes_done", done, "bytes_total", p.BytesTotal.Load(), "bytes_per_sec", int64(rate))
	}
}
