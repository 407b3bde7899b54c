// Command cassback backs up and restores Apache Cassandra nodes into a
// deduplicated, content-addressed store on local disk or S3.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	ctl := &stopControl{stop: make(chan struct{})}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks a continuous backup to drain and stop;
		// any other command, or a second signal, stops at once.
		<-sigs
		close(ctl.stop)
		if !ctl.graceful.Load() {
			cancel()
		}
		<-sigs
		cancel()
	}()
	err := run(withStopControl(ctx, ctl), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	cancel()
	os.Exit(exitCode(err, os.Stderr))
}

// stopControl carries the graceful-stop request from main to a command.
type stopControl struct {
	stop     chan struct{}
	graceful atomic.Bool // the running command drains on the first signal
}

type stopKey struct{}

func withStopControl(ctx context.Context, c *stopControl) context.Context {
	return context.WithValue(ctx, stopKey{}, c)
}

// gracefulStop registers the caller as able to stop gracefully and returns
// the channel closed by the first signal (never closed when run by tests
// without one).
func gracefulStop(ctx context.Context) <-chan struct{} {
	c, ok := ctx.Value(stopKey{}).(*stopControl)
	if !ok {
		return nil
	}
	c.graceful.Store(true)
	return c.stop
}

// exitCode prints err as one line and maps it to the exit status:
// 0 success, 1 failure, 2 usage error.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case isUsage(err):
		fmt.Fprintf(stderr, "cassback: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "cassback: %v\n", err)
		return 1
	}
}
