package nodegen

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"time"
)

// rng is SplitMix64: one add and three multiply-xorshift steps per 64 bits,
// which keeps row generation near 1 GB/s. It is not for cryptography; it
// only has to be deterministic for a seed and well mixed.
type rng struct{ s uint64 }

func newRng(seed uint64) *rng { return &rng{s: seed} }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a value in [0, n); n must be > 0.
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// derive mixes a seed with names and numbers, so that every table, SSTable
// and segment has its own stream that does not depend on generation order.
func derive(seed uint64, parts ...any) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			h.Write([]byte(v))
			h.Write([]byte{0})
		case int:
			binary.LittleEndian.PutUint64(b[:], uint64(v))
			h.Write(b[:])
		case int64:
			binary.LittleEndian.PutUint64(b[:], uint64(v))
			h.Write(b[:])
		case uint64:
			binary.LittleEndian.PutUint64(b[:], v)
			h.Write(b[:])
		default:
			panic("nodegen: derive: unsupported part type")
		}
	}
	r := rng{s: h.Sum64()}
	return r.next()
}

// uuidEpoch is the start of the Gregorian calendar, the epoch of version-1
// UUID timestamps (100 ns intervals).
var uuidEpoch = time.Date(1582, 10, 15, 0, 0, 0, 0, time.UTC)

// timeUUID returns a version-1 (time-based) UUID as 16 bytes, the kind
// Cassandra uses for user table ids and transaction-log ids. Clock sequence
// and node come from r, so the result is deterministic for a seed and time.
func timeUUID(t time.Time, r *rng) [16]byte {
	// 100 ns ticks since 1582; time.Sub would overflow (292 years max).
	ticks := uint64(t.Unix()-uuidEpoch.Unix())*1e7 + uint64(t.Nanosecond()/100)
	var u [16]byte
	binary.BigEndian.PutUint32(u[0:], uint32(ticks))
	binary.BigEndian.PutUint16(u[4:], uint16(ticks>>32))
	binary.BigEndian.PutUint16(u[6:], uint16(ticks>>48)&0x0fff|0x1000)
	x := r.next()
	binary.BigEndian.PutUint16(u[8:], uint16(x)&0x3fff|0x8000)
	u[10], u[11], u[12], u[13], u[14], u[15] = byte(x>>16), byte(x>>24), byte(x>>32), byte(x>>40), byte(x>>48), byte(x>>56)
	return u
}

// uuidString formats a UUID the canonical way (8-4-4-4-12).
func uuidString(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
