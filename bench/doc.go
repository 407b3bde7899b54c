// Package bench holds cassback's cross-package benchmarks: chunking and
// hashing throughput, and backup and restore of a generated node against
// the local store. It has no non-test code.
//
// Run them with
//
//	go test -run '^$' -bench . -benchtime 3x ./bench/
//
// CASSBACK_BENCH_BYTES sets the generated node's size (default 1 GiB).
// Results, with the machine and date, are in docs/benchmarks.md.
package bench
