package survey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// ErrNoData is wrapped by the error of a Get that reaches into a pack's
// chunk data, which the survey endpoint never keeps.
var ErrNoData = errors.New("the survey endpoint stores no data")

// DataPrefix starts the keys whose objects are data: only a stub of each is
// kept (its size and its last bytes, the pack header and trailer).
const DataPrefix = "packs/"

func isData(key string) bool { return strings.HasPrefix(key, DataPrefix) }

// Store is a remote.Store and remote.Conditional that keeps everything but
// pack data in a meta store (a remote/local store) and appends one line per
// operation to a survey file. It is safe for concurrent use by goroutines;
// several processes may share a survey file and a meta dir.
type Store struct {
	meta *local.Store

	mu  sync.Mutex // orders lines: the time is read and the line written under it
	log *os.File
	now func() time.Time
}

var (
	_ remote.Store       = (*Store)(nil)
	_ remote.Conditional = (*Store)(nil)
)

// Open opens the survey endpoint: it appends to the file surveyPath and
// keeps metadata in the folder metaDir. It creates the survey file, its
// parent folders and metaDir as needed. An existing surveyPath must be a
// regular file, and it must not be inside metaDir (it would show up as a key
// there). Close the store to sync the survey file.
func Open(surveyPath, metaDir string) (*Store, error) {
	if surveyPath == "" || metaDir == "" {
		return nil, errors.New("open survey: a survey path and a meta dir are both needed")
	}
	absLog, err1 := filepath.Abs(surveyPath)
	absMeta, err2 := filepath.Abs(metaDir)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("open survey: %w", err)
	}
	if rel, err := filepath.Rel(absMeta, absLog); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("open survey: survey file %s is inside the meta dir %s; put it elsewhere", surveyPath, metaDir)
	}
	// A FIFO or device would block or swallow the log: check before opening.
	if fi, err := os.Stat(surveyPath); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open survey: %s exists and is not a regular file", surveyPath)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open survey: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(absLog), 0o750); err != nil {
		return nil, fmt.Errorf("open survey: %w", err)
	}
	meta, err := local.Create(metaDir)
	if err != nil {
		return nil, fmt.Errorf("open survey meta dir: %w", err)
	}
	f, err := os.OpenFile(surveyPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open survey: %w", err)
	}
	return &Store{meta: meta, log: f, now: time.Now}, nil
}

// Close syncs and closes the survey file. Lines are written one write call
// each, unbuffered, so a process that exits without Close loses none.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil
	}
	err := s.log.Sync()
	if cerr := s.log.Close(); err == nil {
		err = cerr
	}
	s.log = nil
	return err
}

// record appends one line. The file is opened O_APPEND and each line is
// one write, so lines from goroutines and processes never interleave.
func (s *Store) record(op Op, key string, n int64, replaced bool, old int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return errors.New("survey file is closed")
	}
	e := Event{Time: s.now(), Op: op, Key: key, N: n, Replaced: replaced, Old: old}
	if _, err := s.log.Write(e.AppendLine(make([]byte, 0, 128))); err != nil {
		return fmt.Errorf("write survey line: %w", err)
	}
	return nil
}

// size returns the logical size of the object under key, and whether there
// is one. For a pack it reads the stub's header.
func (s *Store) size(ctx context.Context, key string) (remote.Info, bool, error) {
	info, err := s.meta.Stat(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return remote.Info{}, false, nil
	}
	if err != nil {
		return remote.Info{}, false, err
	}
	if isData(key) {
		if info.Size, err = s.stubSize(ctx, key, info.Size); err != nil {
			return remote.Info{}, false, err
		}
	}
	return info, true, nil
}

// stubSize reads the logical size of the stub of stubLen bytes under key.
// Errors of the meta store name the key; the caller adds it to others.
func (s *Store) stubSize(ctx context.Context, key string, stubLen int64) (int64, error) {
	rc, err := s.meta.Get(ctx, key, 0, int64(stubHeaderSize))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	hdr, err := io.ReadAll(rc)
	if err != nil {
		return 0, fmt.Errorf("read stub: %w", err)
	}
	return stubSize(hdr, stubLen)
}

// PutVerified implements remote.Verifying as the S3 stores a survey
// stands for do (they verify a PUT's checksum and echo it), so a survey
// logs no HEAD after a pack's upload that such a store would not serve.
func (s *Store) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	err := s.Put(ctx, key, data, size)
	return err == nil, err
}

// Put implements remote.Store. A pack is read to its end but only its stub
// is stored; the line records its full size.
func (s *Store) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if err := remote.Begin(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d", key, size)
	}
	old, replaced, err := s.size(ctx, key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if isData(key) {
		b, err := readStub(ctx, data, size)
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		if err := s.meta.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			return err
		}
	} else if err := s.meta.Put(ctx, key, data, size); err != nil {
		return err
	}
	if err := s.record(OpStored, key, size, replaced, old.Size); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutIf implements remote.Conditional by delegating to the meta store.
func (s *Store) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := remote.Begin(ctx, "put-if", key); err != nil {
		return "", err
	}
	var old remote.Info
	var replaced bool
	if ifMatch != "" {
		var err error
		if old, replaced, err = s.size(ctx, key); err != nil {
			return "", fmt.Errorf("put-if %s: %w", key, err)
		}
		// If the object changed since, the ETag no longer matches and the
		// write below fails: a successful write replaced this object.
	}
	stored := data
	if isData(key) {
		b, err := readStub(ctx, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return "", fmt.Errorf("put-if %s: %w", key, err)
		}
		stored = b
	}
	etag, err := s.meta.PutIf(ctx, key, stored, ifMatch)
	if errors.Is(err, remote.ErrPrecondition) {
		if lerr := s.record(OpConflict, key, 0, false, 0); lerr != nil {
			return "", fmt.Errorf("put-if %s: %w", key, lerr)
		}
	}
	if err != nil {
		return "", err
	}
	if err := s.record(OpStored, key, int64(len(data)), replaced, old.Size); err != nil {
		return "", fmt.Errorf("put-if %s: %w", key, err)
	}
	return etag, nil
}

// Get implements remote.Store. Of a pack it returns only bytes the stub
// keeps (the header and trailer); a range reaching into chunk data fails
// with an error wrapping ErrNoData.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := remote.Begin(ctx, "get", key); err != nil {
		return nil, err
	}
	if isData(key) {
		return s.getData(ctx, key, offset, length)
	}
	rc, err := s.meta.Get(ctx, key, offset, length)
	if errors.Is(err, fs.ErrNotExist) {
		if lerr := s.record(OpMissing, key, 0, false, 0); lerr != nil {
			return nil, fmt.Errorf("get %s: %w", key, lerr)
		}
	}
	if err != nil {
		return nil, err
	}
	// The bytes a real store would send: the range, clipped to the object.
	info, err := s.meta.Stat(ctx, key)
	if err == nil {
		err = s.record(OpRestored, key, clip(info.Size, offset, length), false, 0)
	}
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return rc, nil
}

func (s *Store) getData(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := s.meta.Get(ctx, key, 0, -1)
	if errors.Is(err, fs.ErrNotExist) {
		if lerr := s.record(OpMissing, key, 0, false, 0); lerr != nil {
			return nil, fmt.Errorf("get %s: %w", key, lerr)
		}
	}
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("get %s: read stub: %w", key, err)
	}
	st, err := decodeStub(b)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 || offset > st.size {
		return nil, fmt.Errorf("get %s: %w: offset %d, object size %d", key, remote.ErrInvalidRange, offset, st.size)
	}
	n := clip(st.size, offset, length)
	if n > 0 && offset < st.tailStart() {
		return nil, fmt.Errorf("get %s: bytes %d to %d of %d: %w (it keeps only the last %d bytes of a pack: header and trailer)",
			key, offset, offset+n, st.size, ErrNoData, len(st.tail))
	}
	if err := s.record(OpRestored, key, n, false, 0); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	var body []byte
	if n > 0 {
		i := offset - st.tailStart()
		body = st.tail[i : i+n]
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

// clip returns how many bytes a Get of a valid offset and length returns
// from an object of size bytes.
func clip(size, offset, length int64) int64 {
	n := size - offset
	if length >= 0 && length < n {
		n = length
	}
	return max(n, 0)
}

// Stat implements remote.Store. A pack's size is its logical size.
func (s *Store) Stat(ctx context.Context, key string) (remote.Info, error) {
	if err := remote.Begin(ctx, "stat", key); err != nil {
		return remote.Info{}, err
	}
	info, err := s.meta.Stat(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		if lerr := s.record(OpMissing, key, 0, false, 0); lerr != nil {
			return remote.Info{}, fmt.Errorf("stat %s: %w", key, lerr)
		}
	}
	if err != nil {
		return remote.Info{}, err
	}
	if isData(key) {
		if info.Size, err = s.stubSize(ctx, key, info.Size); err != nil {
			return remote.Info{}, fmt.Errorf("stat %s: %w", key, err)
		}
	}
	if err := s.record(OpStat, key, info.Size, false, 0); err != nil {
		return remote.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return info, nil
}

// List implements remote.Store. Packs are listed with their logical sizes.
// One line records the listing, with the number of keys fn was given.
func (s *Store) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if err := remote.BeginList(ctx, prefix); err != nil {
		return err
	}
	n := int64(0)
	err := s.meta.List(ctx, prefix, func(info remote.Info) error {
		if isData(info.Key) {
			size, err := s.stubSize(ctx, info.Key, info.Size)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted since it was listed
			}
			if err != nil {
				return fmt.Errorf("list %s: %w", info.Key, err)
			}
			info.Size = size
		}
		n++
		return fn(info)
	})
	if lerr := s.record(OpListed, prefix, n, false, 0); lerr != nil && err == nil {
		err = fmt.Errorf("list %s: %w", prefix, lerr)
	}
	return err
}

// ListDirs implements remote.Store.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	dirs, err := s.meta.ListDirs(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if err := s.record(OpListedDirs, prefix, int64(len(dirs)), false, 0); err != nil {
		return nil, fmt.Errorf("list-dirs %s: %w", prefix, err)
	}
	return dirs, nil
}

// Delete implements remote.Store. The line records the bytes freed: the
// logical size of what was there, or 0.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := remote.Begin(ctx, "delete", key); err != nil {
		return err
	}
	info, _, err := s.size(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := s.meta.Delete(ctx, key); err != nil {
		return err
	}
	if err := s.record(OpRemoved, key, info.Size, false, 0); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
