// Package watch turns file-system events under Cassandra data directories
// into backup events: an SSTable is Ready, was Rewritten, is Gone.
//
// # What it reports
//
// An SSTable is Ready when sstable.CheckComplete says so (TOC.txt present
// with every component it lists, no uncommitted ADD in a *_txn_*.log, no
// tmp-/tmplink- marker or .tmp suffix; Data.db before 1.2). A component
// Cassandra replaces later under the same name (Statistics.db, Summary.db
// via ".tmp" and rename, or in place; an SAI index rebuilt) makes it
// Rewritten, with the whole SSTable and the changed files. When its Data.db
// or TOC.txt disappears, a committed transaction removes it, or its
// directory is dropped, it is Gone. Synced follows every full scan of a
// root. snapshots/, backups/ and tmp/ are never watched, the keyspace
// "system" only with Options.IncludeSystem.
//
// # Guarantees to the consumer
//
//   - Start-up: every directory is watched before the root is scanned, so
//     an SSTable written meanwhile is seen by the scan, by an event, or by
//     both; it is reported once. Every complete SSTable is Ready once per
//     Run (the watcher keeps no state across runs), then Synced.
//   - Duplicates: an SSTable is reported again only when a component's
//     inode, size or mtime changed, or its set of files did.
//   - Order: events are sent in the order found. For one SSTable: Ready,
//     then any Rewritten, then Gone. Within one check of a directory every
//     Ready precedes every Gone, so a compaction's output is reported
//     before its inputs go.
//   - Nothing is dropped because the consumer is slow: events queue in
//     memory (about 2 KB per SSTable). Queued events are coalesced per
//     SSTable: changes to an SSTable whose Ready or Rewritten is not sent
//     yet are folded into that one event, and an SSTable that goes before
//     its Ready is sent is dropped with its Gone (its data lives on in
//     whatever replaced it).
//   - Holding: the hard links of a Ready or Rewritten event are taken just
//     before it is sent, so a file that vanishes while the consumer reads
//     it (compaction) stays readable through Event.Held, until Release. A
//     slow consumer pins only the files it holds plus one event's, never a
//     backlog, which on a node with little free space could fill the disk
//     Cassandra needs for compaction. The links live in
//     <hold>/held/<ks>/<table>/<file>.<n>, on the data directory's file
//     system (New checks; ErrCrossDevice otherwise); New removes the links
//     an earlier run left. A consumer must Release every Ready/Rewritten
//     event it received, also after errors.
//   - Nothing outside the data directory: no symbolic link below a root is
//     followed, to a directory (it is neither walked nor watched) or a
//     file (an SSTable with such a component is never complete), and no
//     FIFO or device is opened; each such entry is warned of once per run.
//     Links are taken with linkat(2) from a directory opened without
//     following links (sstable.OpenDir), and a link to anything but a
//     regular file (swapped in after the check) is removed, warned of, and
//     its SSTable checked again. A reported SSTable whose Data.db or
//     TOC.txt becomes such an entry is Gone.
//
// # Holding for one-shot backups
//
// Holder is the hard-linking above, on its own: NewHolder gives a one-shot
// backup a private folder <hold>/oneshot-<random> beside a Watcher's
// <hold>/held. Each live holder keeps a shared flock(2) on
// <hold>/oneshot.lock; NewHolder removes the folders of holders that ended
// (crashed) only when it can take that lock exclusively, so concurrent
// one-shot backups and a continuous one never remove each other's links.
//
// # Events, debounce, rescans
//
// fsnotify is not recursive: the watcher adds a watch per keyspace, table
// and ".<index>" directory and lists each new directory right after
// watching it, so files created before the watch are not missed. A file
// event marks its SSTable (a transaction-log event: every SSTable of the
// directory not yet complete) for a check Debounce after the directory's
// last event, at most 10×Debounce after its first; a flush's dozen events
// cost one check. A directory whose prefixes to check exceed 64 is checked
// with one sstable.Scan of its keyspace instead of CheckComplete per
// prefix, which reads the directory each time.
//
// A full rescan (walk, sstable.Scan, reconcile) runs every RescanInterval
// as a safety net and after the source reports lost events. When the
// kernel's inotify watch limit is reached, the watcher logs a warning
// naming sysctl fs.inotify.max_user_watches and a value to set, keeps the
// watches it has, and rescans every PollInterval, trying to add the missing
// watches each time; once all are in place it says so and goes back to
// RescanInterval. A rescan stats only the mutable components of SSTables
// it already knows, so on 10,000 SSTables it costs about 1 s of CPU on the
// 2-vCPU dev VM, 60% of it in sstable.Scan (0.2% of a core at the default
// 10 minutes, 3% at 30 s).
//
// # Concurrency
//
// Run owns all state on one goroutine: it reads the Source, runs the
// checks, takes the links and sends on the channel. Release may be called
// from any goroutine. No fsnotify type appears in the API: Source and Clock
// are small interfaces, and Options.Source and Options.Clock replace them.
//
// # Cost
//
// Measured on the 2-vCPU dev VM (bench_test.go, 10,000 SSTables of 8 files
// in 1,000 table directories): start-up (1,011 watches, scan, 80,000
// stat(2)s and link(2)s, 10,000 Ready sent and released) about 5 s, most of
// it link(2) and unlink(2) on slow metadata storage; 20 MiB of heap; idle
// watching under 0.1% of a core (the loop blocks in select).
//
// # Tests
//
// The tests drive a Watcher with a fake Source that diffs a real temporary
// tree and emits only the events inotify would (entries of watched
// directories, watches dropped with their directory) and a fake Clock
// advanced by hand; an unexported barrier makes the loop handle everything
// pending, so no test sleeps. Cases: a 3.0 flush under a transaction log, a
// 2.x tmp- rename flush (2.1 and 2.2 names), Statistics.db rewritten by
// rename and in place, deletion with the held bytes still readable,
// keyspaces, tables and index directories created and dropped while
// running, snapshots/backups/tmp and excluded keyspaces ignored, an SSTable
// written between the watches and the scan, the watch limit (warning,
// polling, recovery), lost events, a hold folder on another file system
// (tmpfs, and EXDEV from an injected link), symbolic links to components
// and table directories, a FIFO or link swapped in just before the hold,
// the one-shot Holder (links outlive deletion, stale folders removed, live
// ones kept), a slow consumer (coalescing,
// at most one undelivered event held), and nodegen nodes of 2.1, 2.2, 4.0
// and 5.0 BTI through flush, compaction, rewrite and snapshot. One test
// runs the real fsnotify on a generated node with bounded waits.
// Benchmarks measure start-up, a rescan and idle CPU on 10,000 SSTables.
package watch
