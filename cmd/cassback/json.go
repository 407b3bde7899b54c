package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
)

// The documents --json prints, one per command run, on stdout. Their
// schemas are in docs/cli.md ("JSON output"), which TestJSONSchemas checks
// field by field against real output: a field added here must be added
// there. jsonVersion changes only when a field changes meaning or goes
// away; new fields may appear within a version. Every list is an array,
// empty rather than null; times are RFC 3339 in UTC; sizes are bytes;
// durations are seconds.
const jsonVersion = 1

// jsonHeader begins every document.
type jsonHeader struct {
	Version int    `json:"version"`
	Command string `json:"command"`
}

func header(command string) jsonHeader { return jsonHeader{Version: jsonVersion, Command: command} }

// writeJSON writes v as one indented JSON document and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// arr returns s, or an empty slice for nil, so that it encodes as [].
func arr[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// each maps s through f into a slice that encodes as [] when empty.
func each[S, T any](s []S, f func(S) T) []T {
	out := make([]T, 0, len(s))
	for _, v := range s {
		out = append(out, f(v))
	}
	return out
}

// firstErr returns err, or else werr (the error writing a document): the
// command's own error comes first.
func firstErr(err, werr error) error {
	if err != nil {
		return err
	}
	return werr
}

func utc(t time.Time) time.Time { return t.UTC() }

// list KEYSPACE / list

type listDoc struct {
	jsonHeader
	Host      string         `json:"host"`
	Day       string         `json:"day"`
	All       bool           `json:"all"`
	Keyspaces []listKeyspace `json:"keyspaces"`
}

type listKeyspace struct {
	Keyspace string   `json:"keyspace"`
	Backups  []string `json:"backups"`
}

// list --hosts

type listHostsDoc struct {
	jsonHeader
	Encrypted bool       `json:"encrypted"`
	Hosts     []listHost `json:"hosts"`
}

type listHost struct {
	Host         string    `json:"host"`
	Keyspaces    int       `json:"keyspaces"`
	NewestBackup string    `json:"newest_backup"`
	NewestTime   time.Time `json:"newest_time"`
}

func listHostsJSON(encrypted bool, hs []cassback.HostStatus) listHostsDoc {
	return listHostsDoc{jsonHeader: header("list"), Encrypted: encrypted, Hosts: each(hs, func(h cassback.HostStatus) listHost {
		n := newestKeyspace(h)
		return listHost{Host: h.Host, Keyspaces: len(h.Keyspaces), NewestBackup: n.Backup, NewestTime: utc(n.Time)}
	})}
}

// show

type showDoc struct {
	jsonHeader
	Backup           string      `json:"backup"`
	Keyspace         string      `json:"keyspace"`
	Host             string      `json:"host"`
	Time             time.Time   `json:"time"`
	CassandraVersion string      `json:"cassandra_version"`
	Files            int         `json:"files"`
	Bytes            int64       `json:"bytes"`
	Tables           []showTable `json:"tables"`
}

type showTable struct {
	Table string     `json:"table"`
	ID    string     `json:"id"`
	Files []showFile `json:"files"`
}

type showFile struct {
	Path     string    `json:"path"`
	Bytes    int64     `json:"bytes"`
	MTime    time.Time `json:"mtime"`
	Unstored bool      `json:"unstored"`
}

// writeShowJSON writes the show document of a manifest from
// manifest.GetHeader, byte for byte what writeJSON writes of its showDoc,
// reading the tables' files from src a batch of leaves at a time and
// writing each as it comes: the document of a manifest of any size is
// never held whole. The counts come from the manifest's header, which
// EachFile checks the files against.
func writeShowJSON(ctx context.Context, w io.Writer, m *manifest.Manifest, src manifest.Chunks) error {
	d := showDoc{
		jsonHeader: header("show"), Backup: m.Name, Keyspace: m.Keyspace, Host: m.Host, Time: utc(m.Time),
		CassandraVersion: m.CassandraVersion, Tables: []showTable{},
	}
	for _, t := range m.Tables {
		d.Files += t.Count
		d.Bytes += t.Bytes
	}
	// The document is its head with an empty list of tables, that list
	// cut off and written a table at a time; each table likewise with its
	// list of files, at the depth writeJSON indents them to.
	b, err := jsonCut(d, "", "[]\n}\n")
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	sep := "["
	for i, t := range m.Tables {
		b, err := jsonCut(showTable{Table: t.Name, ID: t.ID, Files: []showFile{}}, "    ", "[]\n    }\n")
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n    %s", sep, b); err != nil {
			return err
		}
		sep = ","
		fsep := "["
		err = m.EachFile(ctx, src, i, nil, func(f *manifest.File) error {
			b, err := jsonCut(showFile{Path: f.Path, Bytes: f.Size, MTime: utc(f.MTime), Unstored: f.Unstored}, "        ", "\n")
			if err == nil {
				_, err = fmt.Fprintf(w, "%s\n        %s", fsep, b)
			}
			fsep = ","
			return err
		})
		if err != nil {
			return err
		}
		end := "\n      ]"
		if fsep == "[" {
			end = "[]"
		}
		if _, err := io.WriteString(w, end+"\n    }"); err != nil {
			return err
		}
	}
	end := "\n  ]"
	if sep == "[" {
		end = "[]"
	}
	_, err = io.WriteString(w, end+"\n}\n")
	return err
}

// jsonCut is v as writeJSON writes it, each line after the first begun
// by prefix (its depth in a document), less its ending cut.
func jsonCut(v any, prefix, cut string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent(prefix, "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b, ok := bytes.CutSuffix(buf.Bytes(), []byte(cut))
	if !ok {
		return nil, fmt.Errorf("json of %T does not end in %q", v, cut)
	}
	return b, nil
}

// validate

type validateDoc struct {
	jsonHeader
	OK              bool              `json:"ok"`
	Checksum        bool              `json:"checksum"`
	Backups         []string          `json:"backups"`
	Files           int               `json:"files"`
	Chunks          int               `json:"chunks"`
	Packs           int               `json:"packs"`
	BytesRead       int64             `json:"bytes_read"`
	DurationSeconds float64           `json:"duration_seconds"`
	Problems        []validateProblem `json:"problems"`
	BadIndex        []string          `json:"bad_index"`
	Damaged         []string          `json:"damaged"`
	OrphanPacks     []string          `json:"orphan_packs"`
	StaleSessions   []jsonSession     `json:"stale_sessions"`
	Condemned       []jsonCondemned   `json:"condemned"`
	LoneCommits     []string          `json:"lone_commits"`
}

type validateProblem struct {
	Backup   string `json:"backup"`
	Keyspace string `json:"keyspace"`
	Table    string `json:"table"`
	File     string `json:"file"`
	Kind     string `json:"kind"`
	What     string `json:"what"`
}

type jsonSession struct {
	Key     string    `json:"key"`
	Host    string    `json:"host"`
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
}

func sessionJSON(s gc.SessionInfo) jsonSession {
	return jsonSession{Key: s.Key, Host: s.Host, ID: s.ID, Kind: string(s.Kind), State: string(s.State), Started: utc(s.Started), Renewed: utc(s.Renewed)}
}

type jsonCondemned struct {
	ID    string    `json:"id"`
	Packs int       `json:"packs"`
	Bytes int64     `json:"bytes"`
	Time  time.Time `json:"time"`
}

func condemnedJSON(s gc.CondemnedSet) jsonCondemned {
	return jsonCondemned{ID: s.ID, Packs: len(s.Packs), Bytes: s.Bytes, Time: utc(s.Time)}
}

func validateJSON(o cassback.ValidateOptions, rep cassback.ValidateReport) validateDoc {
	return validateDoc{
		jsonHeader: header("validate"), OK: rep.OK(), Checksum: o.Checksum, Backups: arr(rep.Backups),
		Files: rep.Files, Chunks: rep.Chunks, Packs: rep.Packs, BytesRead: rep.BytesRead, DurationSeconds: rep.Duration.Seconds(),
		Problems: each(rep.Problems, func(p cassback.Problem) validateProblem {
			return validateProblem{Backup: p.Backup, Keyspace: p.Keyspace, Table: p.Table, File: p.File, Kind: string(p.Kind), What: p.What}
		}),
		BadIndex:      arr(rep.BadIndex),
		Damaged:       arr(rep.Damaged),
		OrphanPacks:   each(rep.Orphans, func(id chunk.ID) string { return id.String() }),
		StaleSessions: each(rep.StaleSessions, sessionJSON),
		Condemned:     each(rep.Condemned, condemnedJSON),
		LoneCommits:   arr(rep.Lone),
	}
}

// purge

type purgeDoc struct {
	jsonHeader
	Host    string         `json:"host"`
	DryRun  bool           `json:"dry_run"`
	Cutoff  time.Time      `json:"cutoff"`
	Backups []string       `json:"backups"`
	Kept    []string       `json:"kept"`
	Skipped []purgeSkipped `json:"skipped"`
	// PacksListed says the collection listed every pack (a scan), ScanWhy
	// why it did or did not.
	PacksListed bool         `json:"packs_listed"`
	ScanWhy     string       `json:"scan_why"`
	Plan        *purgePlan   `json:"plan"`
	Result      *purgeResult `json:"result"`
}

type purgeSkipped struct {
	Backup string `json:"backup"`
	Why    string `json:"why"`
}

type purgePlan struct {
	Blocked       []string        `json:"blocked"`
	Withdraw      []string        `json:"withdraw"`
	Repair        []string        `json:"repair"`
	LoneCommits   []string        `json:"lone_commits"`
	CondemnPacks  int             `json:"condemn_packs"`
	CondemnBytes  int64           `json:"condemn_bytes"`
	RepackPacks   int             `json:"repack_packs"`
	RepackBytes   int64           `json:"repack_bytes"`
	Sweep         []jsonCondemned `json:"sweep"`
	Waiting       []jsonWaiting   `json:"waiting"`
	StaleSessions []string        `json:"stale_sessions"`
	StaleIndex    []string        `json:"stale_index_files"`
}

type jsonWaiting struct {
	ID     string `json:"id"`
	Packs  int    `json:"packs"`
	Reason string `json:"reason"`
}

func waitingJSON(w gc.Waiting) jsonWaiting {
	return jsonWaiting{ID: w.Set.ID, Packs: len(w.Set.Packs), Reason: w.Reason}
}

type purgeResult struct {
	Blocked          []string      `json:"blocked"`
	Withdrawn        []string      `json:"withdrawn"`
	Repaired         int           `json:"repaired"`
	CondemnedPacks   int           `json:"condemned_packs"`
	CondemnedBytes   int64         `json:"condemned_bytes"`
	DeletedPacks     int           `json:"deleted_packs"`
	DeletedBytes     int64         `json:"deleted_bytes"`
	ResurrectedPacks int           `json:"resurrected_packs"`
	RepackedPacks    int           `json:"repacked_packs"`
	RepackedBytes    int64         `json:"repacked_bytes"`
	IndexRewritten   int           `json:"index_rewritten"`
	IndexMerged      int           `json:"index_merged"`
	Waiting          []jsonWaiting `json:"waiting"`
	RevokedSessions  []string      `json:"revoked_sessions"`
	LostChunks       int           `json:"lost_chunks"`
	TempRemoved      int           `json:"temp_removed"`
}

func purgeJSON(o cassback.PurgeOptions, res cassback.PurgeResult) purgeDoc {
	d := purgeDoc{
		jsonHeader: header("purge"), Host: o.Host, DryRun: o.DryRun, Cutoff: utc(res.Cutoff),
		Backups: arr(res.Manifests), Kept: arr(res.Kept),
		Skipped: each(res.Skipped, func(s cassback.Skipped) purgeSkipped { return purgeSkipped{Backup: s.Name, Why: s.Why} }),
	}
	if p := res.Plan; p != nil {
		d.PacksListed, d.ScanWhy = p.Scanned, p.ScanWhy
	}
	if p := res.Plan; o.DryRun && p != nil {
		d.Plan = &purgePlan{
			Blocked: arr(p.Blocked), Withdraw: arr(p.Withdraw),
			Repair:      each(p.Repair, func(r gc.Repair) string { return r.Name }),
			LoneCommits: arr(p.Lone), CondemnPacks: len(p.Condemn), CondemnBytes: p.CondemnBytes,
			RepackPacks: len(p.Repack), RepackBytes: p.RepackBytes,
			Sweep: each(p.Sweep, condemnedJSON), Waiting: each(p.Waiting, waitingJSON),
			StaleSessions: each(p.Stale, func(s gc.SessionInfo) string { return s.Key }),
			StaleIndex:    arr(p.StaleIndex),
		}
	}
	if !o.DryRun {
		r := res.GC
		d.Result = &purgeResult{
			Blocked: arr(r.Blocked), Withdrawn: arr(r.Withdrawn), Repaired: r.Repaired,
			CondemnedPacks: r.Condemned, CondemnedBytes: r.CondemnedBytes, DeletedPacks: r.Deleted, DeletedBytes: r.DeletedBytes,
			ResurrectedPacks: r.Resurrected, RepackedPacks: r.Repacked, RepackedBytes: r.RepackedBytes,
			IndexRewritten: r.IndexRewritten, IndexMerged: r.IndexMerged, Waiting: each(r.Waiting, waitingJSON),
			RevokedSessions: arr(r.RevokedSessions), LostChunks: r.Lost, TempRemoved: res.TempRemoved,
		}
	}
	return d
}

// backup

type backupDoc struct {
	jsonHeader
	Mode            string   `json:"mode"`
	Host            string   `json:"host"`
	Files           int      `json:"files"`
	FilesReused     int      `json:"files_reused"`
	BytesTotal      int64    `json:"bytes_total"`
	BytesRead       int64    `json:"bytes_read"`
	BytesNew        int64    `json:"bytes_new"`
	ChunksNew       int64    `json:"chunks_new"`
	ChunksDup       int64    `json:"chunks_dup"`
	Packs           int64    `json:"packs"`
	DedupRatio      float64  `json:"dedup_ratio"`
	Backups         []string `json:"backups"`
	FailedKeyspaces []string `json:"failed_keyspaces"`
	Incomplete      int      `json:"incomplete"`
	Vanished        int      `json:"vanished"`
	NotRegular      int      `json:"not_regular"`
	DurationSeconds float64  `json:"duration_seconds"`
}

func backupJSON(host string, s cassback.BackupSummary) backupDoc {
	return backupDoc{
		jsonHeader: header("backup"), Mode: "one-shot", Host: host, Files: s.Files, FilesReused: s.FilesReused,
		BytesTotal: s.BytesTotal, BytesRead: s.BytesRead, BytesNew: s.BytesNew, ChunksNew: s.ChunksNew, ChunksDup: s.ChunksDup,
		Packs: s.Packs, DedupRatio: s.DedupRatio(), Backups: arr(s.Manifests), FailedKeyspaces: arr(s.Failed),
		Incomplete: s.Incomplete, Vanished: s.Vanished, NotRegular: s.NotRegular, DurationSeconds: s.Duration.Seconds(),
	}
}

type continuousDoc struct {
	jsonHeader
	Mode                 string  `json:"mode"`
	Host                 string  `json:"host"`
	SSTables             int     `json:"sstables"`
	FilesRead            int     `json:"files_read"`
	BytesRead            int64   `json:"bytes_read"`
	BytesNew             int64   `json:"bytes_new"`
	Manifests            int     `json:"manifests"`
	Abandoned            int     `json:"abandoned"`
	LatencyMedianSeconds float64 `json:"latency_median_seconds"`
	LatencyP99Seconds    float64 `json:"latency_p99_seconds"`
}

func continuousJSON(host string, st cassback.ContinuousStats) continuousDoc {
	return continuousDoc{
		jsonHeader: header("backup"), Mode: "continuous", Host: host, SSTables: st.SSTables, FilesRead: st.Files,
		BytesRead: st.BytesRead, BytesNew: st.BytesNew, Manifests: st.Manifests, Abandoned: st.Abandoned,
		LatencyMedianSeconds: st.LatencyPercentile(50).Seconds(), LatencyP99Seconds: st.LatencyPercentile(99).Seconds(),
	}
}

// restore

type restoreDoc struct {
	jsonHeader
	DataDir  string        `json:"data_dir"`
	Bytes    int64         `json:"bytes"`
	Restored []restoreFile `json:"restored"`
	Skipped  []restoreFile `json:"skipped"`
	Failed   []restoreFile `json:"failed"`
	Moved    []restoreFile `json:"moved"`
}

type restoreFile struct {
	Backup string `json:"backup"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

func restoreJSON(dataDir string, res cassback.RestoreResult) restoreDoc {
	f := func(o cassback.FileOutcome) restoreFile {
		return restoreFile{Backup: o.Backup, Path: o.Path, Reason: o.Reason}
	}
	return restoreDoc{
		jsonHeader: header("restore"), DataDir: dataDir, Bytes: res.Bytes,
		Restored: each(res.Restored, f), Skipped: each(res.Skipped, f), Failed: each(res.Failed, f), Moved: each(res.Moved, f),
	}
}

// status

type statusDoc struct {
	jsonHeader
	Now               time.Time    `json:"now"`
	Encrypted         bool         `json:"encrypted"`
	StaleAfterSeconds float64      `json:"stale_after_seconds"`
	StaleHosts        int          `json:"stale_hosts"`
	Hosts             []statusHost `json:"hosts"`
}

type statusHost struct {
	Host         string           `json:"host"`
	NewestBackup string           `json:"newest_backup"`
	NewestTime   time.Time        `json:"newest_time"`
	AgeSeconds   float64          `json:"age_seconds"`
	Stale        bool             `json:"stale"`
	Live         bool             `json:"live"`
	Sessions     []statusSession  `json:"sessions"`
	Files        int              `json:"files"`
	Bytes        int64            `json:"bytes"`
	Keyspaces    []statusKeyspace `json:"keyspaces"`
}

type statusSession struct {
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
}

type statusKeyspace struct {
	Keyspace   string    `json:"keyspace"`
	Backup     string    `json:"backup"`
	Time       time.Time `json:"time"`
	AgeSeconds float64   `json:"age_seconds"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`
	Unreadable string    `json:"unreadable"`
}

func statusJSON(now time.Time, encrypted bool, staleAfter time.Duration, hs []cassback.HostStatus) statusDoc {
	d := statusDoc{jsonHeader: header("status"), Now: utc(now), Encrypted: encrypted, StaleAfterSeconds: staleAfter.Seconds()}
	d.Hosts = each(hs, func(h cassback.HostStatus) statusHost {
		n := newestKeyspace(h)
		sh := statusHost{
			Host: h.Host, NewestBackup: n.Backup, NewestTime: utc(n.Time), AgeSeconds: now.Sub(n.Time).Seconds(),
			Stale: isStale(now, staleAfter, h), Live: len(h.Sessions) > 0, Files: h.Files, Bytes: h.Bytes,
			Sessions: each(h.Sessions, func(s gc.SessionInfo) statusSession {
				return statusSession{Kind: string(s.Kind), ID: s.ID, Started: utc(s.Started), Renewed: utc(s.Renewed)}
			}),
			Keyspaces: each(h.Keyspaces, func(k cassback.KeyspaceStatus) statusKeyspace {
				return statusKeyspace{Keyspace: k.Keyspace, Backup: k.Backup, Time: utc(k.Time), AgeSeconds: now.Sub(k.Time).Seconds(), Files: k.Files, Bytes: k.Bytes, Unreadable: k.Unreadable}
			}),
		}
		if sh.Stale {
			d.StaleHosts++
		}
		return sh
	})
	return d
}
