// Package survey is the survey endpoint: a remote.Store that runs every
// backup, list and purge as a real store would but keeps no data, and logs
// each operation a real store would serve, so that survey-report can say
// what backing up a node would cost before anything is stored.
//
// # What it keeps
//
// A meta store (remote/local in --meta-dir) holds everything a real store
// holds except pack data: config, index files, manifests, session and
// purger objects, byte for byte. Under each pack key (DataPrefix, "packs/")
// it holds a stub instead: the pack's logical size and its last bytes,
// which for a cassback pack are its header and trailer and up to a KiB
// before them (n × 36 + 1024 bytes, a few KiB for a 32 MiB pack). So Stat and List report packs at their real
// size, index.ReadPackHeader works, and list, show, validate without
// --checksum and purge run on a survey; a Get reaching into chunk data
// fails with an error wrapping ErrNoData. The nodes of manifests' trees
// in a pack marked as holding them (pack.TreeStart, at most
// pack.MaxTreePack of nodes, after any file chunks) are kept in its stub,
// so manifests read. A stub is stored under the pack's own key, so the meta
// dir lists like a real store.
//
// # The survey file
//
// One line per operation, appended with O_APPEND in one write, so lines of
// concurrent goroutines and processes never interleave; within a process
// they are in time order. Event documents the format:
//
//	2026-11-26T01:02:03.123456Z stored packs/ab/ab12… 33554432
//
// Operations are stored (PUT, N bytes, "replaced OLD" when it replaced an
// object), restored (GET, N bytes sent), removed (DELETE, N bytes freed),
// stat (HEAD), missing (GET or HEAD of a missing key), conflict (a refused
// conditional PUT), listed and listed-dirs (LIST, N keys or directories;
// the key field is the prefix followed by '*'). Failed operations other than
// missing and conflict, which a real store would answer and bill, are not
// logged. Lines are not fsynced one by one; Close syncs the file.
//
// # Reports
//
// Parse reads a survey file, naming the line of the first malformed line;
// Summarize buckets it by hour and month as the original cassback's
// survey-report did, with its running-maximum bug fixed; Report.Write
// prints the hourly table, the monthly usage summary, request counts and
// the estimated cost at given Prices (DefaultPrices: S3 Standard,
// us-east-1).
//
// # Testing
//
// survey_test.go runs remotetest.Run on the store. The suite's keys are
// outside packs/, so it checks the pass-through to the meta store and,
// through a check of every survey file it leaves, that concurrent lines
// stay whole; pack stubs have their own tests, including real packs written
// by index.Writer and read back by index.ReadPackHeader and index.Fetch.
// report_test.go checks the report against figures worked out by hand.
package survey
