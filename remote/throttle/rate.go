package throttle

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// prefixes are the multipliers a rate's unit may start with: SI decimal
// ones (k and K both mean 1000, as "KB" is common) and IEC binary ones.
// Lower-case m (milli) is not one: "mb/s" is refused rather than guessed.
var prefixes = map[string]float64{
	"":  1,
	"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ErrRate is wrapped by every ParseRate error.
var ErrRate = errors.New("want a number and a unit per second, such as 50MB/s, 400Mbit/s or 1GiB/s (0 for no limit)")

// ParseRate parses a transfer rate and returns it in bytes per second; ""
// and any zero rate ("0", "0MB/s") give 0, which means no limit.
//
// A rate is a decimal number, optional spaces and a unit: a prefix (k or K,
// M, G, T: powers of 1000; Ki, Mi, Gi, Ti: powers of 1024) and B for bytes
// or bit or b for bits, then optionally /s or ps: "50MB/s" is 50,000,000
// bytes per second, "400Mbit/s" and "400Mbps" 50,000,000, "1GiB/s"
// 1,073,741,824. A bare number is bytes per second. Units are case
// sensitive where it matters (B is a byte, b a bit; mb is refused).
//
// Medusa's transfer_max_bandwidth, the usual anchor for Cassandra backups,
// reads "50MB/s" as 50 MiB/s (its MB is 1024*1024 bytes); here MB is SI's
// 10^6, so Medusa's setting is written 50MiB/s.
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	end := 0
	for end < len(t) && (t[end] >= '0' && t[end] <= '9' || t[end] == '.') {
		end++
	}
	num, unit := t[:end], strings.TrimSpace(t[end:])
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, ErrRate
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, ErrRate
	}
	mult, ok := unitBytes(unit)
	if !ok {
		return 0, fmt.Errorf("unknown unit %q: %w", unit, ErrRate)
	}
	r := v * mult
	if math.IsInf(r, 0) {
		return 0, ErrRate
	}
	return r, nil
}

// unitBytes returns how many bytes per second one unit of u is.
func unitBytes(u string) (float64, bool) {
	if u == "" {
		return 1, true
	}
	for _, per := range []string{"/s", "ps"} {
		if strings.HasSuffix(u, per) {
			u = strings.TrimSuffix(u, per)
			break
		}
	}
	var base float64
	switch {
	case strings.HasSuffix(u, "bit"):
		u, base = strings.TrimSuffix(u, "bit"), 1.0/8
	case strings.HasSuffix(u, "B"):
		u, base = strings.TrimSuffix(u, "B"), 1
	case strings.HasSuffix(u, "b"):
		u, base = strings.TrimSuffix(u, "b"), 1.0/8
	default:
		return 0, false
	}
	p, ok := prefixes[u]
	return p * base, ok
}

// FormatRate formats bytes per second with six significant digits in the
// largest decimal unit it reaches: 50000000 is "50MB/s", 1073741824
// "1.07374GB/s"; 0 is "0" (no limit).
func FormatRate(bps float64) string {
	if bps == 0 {
		return "0"
	}
	units := []struct {
		name string
		mult float64
	}{{"TB/s", 1e12}, {"GB/s", 1e9}, {"MB/s", 1e6}, {"kB/s", 1e3}}
	for _, u := range units {
		if bps >= u.mult {
			return strconv.FormatFloat(bps/u.mult, 'g', 6, 64) + u.name
		}
	}
	return strconv.FormatFloat(bps, 'g', 6, 64) + "B/s"
}
