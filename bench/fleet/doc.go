// Package fleet is the fleet bench of issue 12: a generator of a real-format
// store of many simulated hosts, and a harness that runs the real cassback
// binary against it and records its peak RSS, wall time and store requests
// by type. It is a bench, not a test of correctness: CI runs only its tiny
// unit test; the large runs are switched on by environment variables
// (bench_test.go) and their results are in docs/benchmarks.md.
//
// # What Generate writes
//
// A survey meta store (remote/survey's --meta-dir, laid out as remote/local
// lays out a store) of Config.Hosts hosts, each with Config.BackupsPerHost
// daily backups of Config.BytesPerHost bytes of SSTables: the config
// (index.NewConfig, index.Init), and for every backup the objects a backup
// leaves: pack stubs (the pack's logical size and its header and trailer,
// exactly the stub the survey store keeps of a real pack), the host's index
// files naming those packs (index.EncodeFile, split after 262,144 entries as
// the writer splits them), one manifest per keyspace (manifest.Put) and the
// marker of their commit (manifest.PutCommit). No pack data is stored, so Stat and
// List report packs at their real size while the store takes a few KiB per
// pack; cassback opens it with --endpoint survey --meta-dir DIR, as it opens
// a survey.
//
// The content is a model, deterministic from Config.Seed: chunk IDs, pack
// IDs and nonces are random bytes from ChaCha8 streams, not hashes of data.
// A file's chunk lengths follow the store's chunker parameters (files under
// the minimum are one chunk; longer ones are cut into segments and each
// segment into chunks of min + an exponential of mean 2^avg_bits, capped at
// max, as content-defined chunking of random data is), and a file's
// chunks come from a stream named by host, keyspace, table and generation,
// so a manifest is rebuilt at each backup without holding earlier ones.
// Each backup after the first replaces Config.Churn of each table's
// SSTables with new ones (a new generation, new chunks), so backups share
// most chunks as daily backups of one node do. One keyspace, fleet_shared,
// holds small SSTables that are byte-identical on every host (about
// Config.SharedFraction of a host's chunks); each of its SSTables is stored
// once, by the host it is assigned to, and every other host's manifests
// reference it, as cross-host deduplication leaves them.
//
// Every kind of object is written by one small function in write.go, so a
// format change touches one place; the pack tail and the stub, whose
// encoders are not exported, are pinned byte for byte against pack.Builder
// and survey.Store by fleet_test.go.
//
// # Cost
//
// Generate streams: it holds one host's SSTable plan (a few dozen bytes an
// SSTable), one keyspace manifest and up to one index file's entries
// (262,144 × 40 bytes) per worker, never the store. Objects are written
// without fsync (a failed generation is simply generated again), and
// Config.Workers hosts are generated at once.
//
// # Measuring
//
// Build compiles cmd/cassback; Measure runs it with --endpoint survey on a
// generated store, with a fresh survey file, under GNU time (a child
// started by os/exec's vfork would report this process's peak as its
// own), and returns its peak RSS, wall and CPU time and the survey file's
// lines counted by operation, which are the requests a real store would
// have served; Env.KillRSS kills a command that grows past a limit.
// RemoveHost takes a measured backup's objects out again, so one generated
// store serves many measurements.
package fleet
