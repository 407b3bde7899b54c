// Package local implements remote.Store and remote.Conditional on a directory
// of a local or network file system (Unix only: it uses flock and inode
// numbers).
//
// # Layout
//
// Key "a/b/c" is the file <dir>/a/b/c. Keys never have a segment starting
// with '.', so the store keeps its own files under such names: temporary
// files ".tmp-<random>" beside their target, and lock files in <dir>/.locks.
// List and ListDirs skip every dot-name and every name that is not a valid
// key segment. A file cannot also be a directory, so "a" and "a/b" cannot
// both exist; the second Put fails.
//
// Only a regular file is an object: a symbolic link, FIFO, socket or
// device where an object belongs (planted by whoever can write the folder)
// is not found by Get and Stat and not listed. Get opens without following
// a link (O_NOFOLLOW) or waiting on a FIFO (O_NONBLOCK) and checks the type
// of what it opened, so such a file never redirects or hangs a command.
// The store's folder itself, and folders within it, may be links.
//
// # Writes
//
// Put writes a temporary file in the target's directory, sets its mtime,
// fsyncs it, renames it over the target and fsyncs the directory; missing
// directories are created and their parents fsynced. A crash leaves at most
// an invisible temporary file, which RemoveStaleTemp deletes later. Delete
// removes the file and then every directory it emptied, up to but not
// including the root.
//
// # Locks
//
// A lock name hashes (first byte of SHA-256) to one of 256 lock files in
// .locks; a lock is an in-process mutex plus flock on that file, so it holds
// across processes sharing the directory, also over NFS, where Linux maps
// flock to POSIX locks. No operation holds two locks, and none holds one
// while copying data.
//   - The key's lock covers the rename or remove of its file. PutIf compares
//     the current ETag and renames under it, so it is atomic against every
//     Put, PutIf and Delete of the key.
//   - The lock of a top-level directory ("packs/") covers Delete removing
//     empty directories below it, and a Put creating missing directories and
//     its temporary file there. Without it a Put could lose every race with
//     cleanups between its mkdir and the temporary file that keeps the
//     directory non-empty. A Put whose directory exists takes no such lock.
//
// # ETags
//
// The ETag is derived from the file's identity: inode number, mtime in
// nanoseconds and size. Put sets the mtime from time.Now explicitly rather
// than trusting the file system's coarser clock, so two writes of a key get
// different ETags even if the kernel reuses the inode number, unless the
// wall clock steps back and the inode is reused and the size matches.
// A content hash (SHA-256 runs at about 1 GB/s here, 32 ms for a 32 MiB pack)
// would be cheap to compute while writing but has nowhere to live: Stat and
// List would have to read every object or depend on xattrs, which not every
// file system has. Identity ETags cost one stat and need no storage.
//
// # Permissions
//
// Files are created 0640 and directories 0750, less the umask: backups hold
// a database's data, so other users get nothing, while a group may read (a
// restore or audit user). Writers sharing a store need the same uid.
//
// # Testing
//
// local_test.go runs remotetest.Run and adds what only a file system can
// show: leftover temporary files stay invisible, invalid keys create nothing,
// Open rejects a missing directory or a file. The benchmarks measure Put and
// Get of 32 MiB objects (the pack size).
package local
