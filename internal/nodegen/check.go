package nodegen

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var (
	modernBase = regexp.MustCompile(`^([a-z]{2})-([0-9]+|[0-9a-z]{4}_[0-9a-z]{4}_[0-9a-z]{18})-(big|bti)$`)
	legacyBase = regexp.MustCompile(`^\w+-\w+(?:\.\w+)?-([a-z]{2})-[0-9]+$`)
)

// CheckSSTable verifies the integrity of one SSTable, generated or written
// by Cassandra 2.1 or later, given its path prefix (the file names without
// "-<Component>", e.g. ".../t-<id>/nb-7-big"):
//
//   - TOC.txt lists exactly the component files present with that prefix;
//   - CompressionInfo.db parses, and its chunk count and offsets match
//     Data.db (first chunk at 0, increasing, inside the file);
//   - every chunk's trailing checksum (Adler-32 before 3.0, CRC-32 after)
//     matches its compressed bytes, and DeflateCompressor chunks inflate to
//     the chunk length (other compressors' chunks are not decompressed);
//   - the Digest component holds the checksum of the whole Data.db.
//
// It returns all problems found, joined; nil means the SSTable is intact.
func CheckSSTable(prefix string) error {
	dir, base := filepath.Split(prefix)
	// BIG versions sort by age ("ka" < "nb" < "oa"); every BTI version
	// ("da", "ea", ...) is 5.0 or later.
	var ver string
	bti := false
	if m := modernBase.FindStringSubmatch(base); m != nil {
		ver, bti = m[1], m[3] == "bti"
	} else if m := legacyBase.FindStringSubmatch(base); m != nil {
		ver = m[1]
	} else {
		return fmt.Errorf("check %s: not an SSTable prefix", prefix)
	}
	if !bti && ver < "ka" {
		return fmt.Errorf("check %s: version %s is older than 2.1", prefix, ver)
	}
	adler := !bti && ver < "ma"
	file := func(comp string) string { return prefix + "-" + comp }
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("check %s: "+format, append([]any{base}, args...)...))
	}

	toc, err := os.ReadFile(file("TOC.txt"))
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, c := range strings.Split(strings.TrimRight(string(toc), "\n"), "\n") {
		listed[c] = true
		if _, err := os.Stat(file(c)); err != nil {
			fail("TOC.txt lists %s: %v", c, err)
		}
	}
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		c, ok := strings.CutPrefix(e.Name(), base+"-")
		if ok && !e.IsDir() && !strings.HasSuffix(c, ".tmp") && !listed[c] {
			fail("%s is not in TOC.txt", e.Name())
		}
	}

	data, err := os.ReadFile(file("Data.db"))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	sum := func(b []byte) uint32 {
		if adler {
			return adler32.Checksum(b)
		}
		return crc32.ChecksumIEEE(b)
	}
	for _, d := range []string{"Digest.crc32", "Digest.adler32", "Digest.sha1"} {
		if !listed[d] {
			continue
		}
		b, err := os.ReadFile(file(d))
		if err != nil {
			fail("%v", err)
			continue
		}
		want, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		if err != nil {
			fail("%s: %v", d, err)
		} else if got := sum(data); uint32(want) != got {
			fail("%s says %d, Data.db has %d", d, want, got)
		}
	}

	if listed["CompressionInfo.db"] {
		ci, err := os.ReadFile(file("CompressionInfo.db"))
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := checkChunks(ci, data, bti || ver >= "na", sum); err != nil {
			fail("%v", err)
		}
	}
	return errors.Join(errs...)
}

// checkChunks checks Data.db against CompressionInfo.db.
func checkChunks(ci, data []byte, maxLen bool, sum func([]byte) uint32) error {
	r := bytes.NewReader(ci)
	var nameLen uint16
	if err := binary.Read(r, binary.BigEndian, &nameLen); err != nil {
		return fmt.Errorf("CompressionInfo.db: %w", err)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(r, name); err != nil {
		return fmt.Errorf("CompressionInfo.db: %w", err)
	}
	var opts int32
	if err := binary.Read(r, binary.BigEndian, &opts); err != nil || opts < 0 || opts > 64 {
		return fmt.Errorf("CompressionInfo.db: bad option count %d (%v)", opts, err)
	}
	for range 2 * opts { // key, value
		var l uint16
		if err := binary.Read(r, binary.BigEndian, &l); err != nil {
			return fmt.Errorf("CompressionInfo.db: %w", err)
		}
		if _, err := r.Seek(int64(l), io.SeekCurrent); err != nil {
			return fmt.Errorf("CompressionInfo.db: %w", err)
		}
	}
	var chunk int32
	var dataLen int64
	var count int32
	fields := []any{&chunk}
	var maxComp int32
	if maxLen {
		fields = append(fields, &maxComp)
	}
	fields = append(fields, &dataLen, &count)
	for _, f := range fields {
		if err := binary.Read(r, binary.BigEndian, f); err != nil {
			return fmt.Errorf("CompressionInfo.db: %w", err)
		}
	}
	if chunk <= 0 || dataLen < 0 || count < 0 || int64(count) != (dataLen+int64(chunk)-1)/int64(chunk) {
		return fmt.Errorf("CompressionInfo.db: %d chunks of %d bytes cannot hold %d bytes", count, chunk, dataLen)
	}
	if r.Len() != 8*int(count) {
		return fmt.Errorf("CompressionInfo.db: %d bytes of offsets for %d chunks", r.Len(), count)
	}
	offs := make([]int64, count, count+1)
	if err := binary.Read(r, binary.BigEndian, offs); err != nil {
		return fmt.Errorf("CompressionInfo.db: %w", err)
	}
	offs = append(offs, int64(len(data)))
	if count > 0 && offs[0] != 0 {
		return fmt.Errorf("first chunk at %d, not 0", offs[0])
	}
	inflate := string(name) == "DeflateCompressor"
	var out []byte
	for i := range int(count) {
		a, b := offs[i], offs[i+1]
		if b-a < 4 || b > int64(len(data)) {
			return fmt.Errorf("chunk %d: offsets %d..%d outside Data.db (%d bytes)", i, a, b, len(data))
		}
		c := data[a : b-4]
		if got, want := sum(c), binary.BigEndian.Uint32(data[b-4:b]); got != want {
			return fmt.Errorf("chunk %d at %d: checksum %08x, stored %08x", i, a, got, want)
		}
		if !inflate {
			continue
		}
		zr, err := zlib.NewReader(bytes.NewReader(c))
		if err == nil {
			out, err = readAllInto(out[:0], zr)
		}
		if err != nil {
			return fmt.Errorf("chunk %d at %d: inflate: %w", i, a, err)
		}
		if want := min(int64(chunk), dataLen-int64(i)*int64(chunk)); int64(len(out)) != want {
			return fmt.Errorf("chunk %d at %d: inflates to %d bytes, want %d", i, a, len(out), want)
		}
	}
	return nil
}

func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
