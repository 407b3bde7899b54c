package chunk

// Ref is one entry of a file's chunk list: which chunk, and how long it is.
type Ref struct {
	ID  ID     `json:"id"`
	Len uint32 `json:"len"`
}
