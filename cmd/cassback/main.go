// Command cassback backs up and restores Apache Cassandra nodes into a
// deduplicated, content-addressed store on local disk or S3.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
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
