package pack

import "encoding/binary"

// TreeMark begins the nonce of a pack that holds nodes of manifest trees
// (docs/design.md §1.5), alone or after a commit's file chunks. The next
// four bytes of such a nonce are the offset (little-endian) in the pack's
// data of its first node, 0 when it holds nodes only; the rest is random.
// Readers treat it as any pack; the survey store keeps its nodes, so that
// manifests can be read on a survey, and drops its file chunks.
var TreeMark = [4]byte{'t', 'r', 'e', 'e'}

// MaxTreePack bounds the nodes of a pack marked as holding them: the
// survey store keeps them when they are at most this size.
const MaxTreePack = 4 << 20

// IsTreePack reports whether t, the last bytes of a pack (its trailer at
// least), marks it as a pack holding tree nodes.
func IsTreePack(t []byte) bool {
	_, ok := TreeStart(t)
	return ok
}

// TreeStart returns the offset in the pack's data of its first tree node,
// given its last bytes t (its trailer at least); ok is false when the
// pack is not marked as holding tree nodes.
func TreeStart(t []byte) (off int64, ok bool) {
	if len(t) < TrailerSize {
		return 0, false
	}
	nonce := t[len(t)-TrailerSize+32:]
	if string(nonce[:len(TreeMark)]) != string(TreeMark[:]) {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint32(nonce[len(TreeMark):])), true
}

// markTree marks the pack as holding tree nodes from its data's current
// end on.
func (pw *Writer) markTree() {
	copy(pw.nonce[:], TreeMark[:])
	binary.LittleEndian.PutUint32(pw.nonce[len(TreeMark):], uint32(pw.data))
}

// MarkTree marks the pack as holding tree nodes from here on: call it
// after the pack's file chunks and before its nodes, and add no file chunk
// after them.
func (s *Spool) MarkTree() { s.pw.markTree() }

// MarkTree marks the pack as holding tree nodes from here on, as
// Spool.MarkTree does.
func (b *Builder) MarkTree() { b.pw.markTree() }
