package pack

// TreeMark begins the nonce of a pack that holds only nodes of manifest
// trees (docs/design.md §1.5); the rest of its nonce is random. Readers
// treat it as any pack; the survey store keeps such packs whole, so that
// manifests can be read on a survey.
var TreeMark = [4]byte{'t', 'r', 'e', 'e'}

// MaxTreePack bounds a pack of tree nodes: the survey store keeps whole a
// marked pack of at most this size.
const MaxTreePack = 4 << 20

// IsTreePack reports whether t, the last bytes of a pack (its trailer at
// least), marks it as a pack of tree nodes.
func IsTreePack(t []byte) bool {
	if len(t) < TrailerSize {
		return false
	}
	nonce := t[len(t)-TrailerSize+32:]
	return string(nonce[:len(TreeMark)]) == string(TreeMark[:])
}
