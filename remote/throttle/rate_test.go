package throttle

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
	}{
		{"", 0},
		{"  ", 0},
		{"0", 0},
		{"0MB/s", 0},
		{"1048576", 1 << 20},
		{"50MB/s", 50e6},
		{"50 MB/s", 50e6},
		{" 50MB/s ", 50e6},
		{"50MBps", 50e6},
		{"50MB", 50e6},
		{"100MiB/s", 100 << 20},
		{"1GiB/s", 1 << 30},
		{"1.5GB/s", 1.5e9},
		{"0.5MiB/s", 1 << 19},
		{"400Mbit/s", 50e6},
		{"400Mbps", 50e6},
		{"400Mb/s", 50e6},
		{"1Gbit/s", 125e6},
		{"8Kibit/s", 1024},
		{"10kB/s", 10e3},
		{"10KB/s", 10e3},
		{"10KiB/s", 10 << 10},
		{"2TB/s", 2e12},
		{"1TiB/s", 1 << 40},
		{"512B/s", 512},
		{"800bit/s", 100},
		{"007MB/s", 7e6},
	} {
		got, err := ParseRate(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRateErrors(t *testing.T) {
	for _, in := range []string{
		"fast", "MB/s", "-5MB/s", "+5MB/s", "5..0MB/s", ".5MB/s", "5.MB/s", "5XB/s", "5mb/s", "5MB/h",
		"5 M B/s", "1e9", "5MB/s/s", "NaN", "Inf", "5 MiB per second", "5Mibyte/s", "5MB/sec",
		strings.Repeat("9", 400) + "TB/s", "1" + strings.Repeat("0", 300) + "TB/s",
	} {
		got, err := ParseRate(in)
		if err == nil || !errors.Is(err, ErrRate) {
			t.Errorf("ParseRate(%q) = %v, %v; want an error wrapping ErrRate", in, got, err)
		}
	}
}

func TestFormatRate(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{512, "512B/s"},
		{1e3, "1kB/s"},
		{50e6, "50MB/s"},
		{1 << 30, "1.07374GB/s"},
		{1e12, "1TB/s"},
	} {
		if got := FormatRate(tt.in); got != tt.want {
			t.Errorf("FormatRate(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParseRate checks that ParseRate never panics and gives either an
// error or a finite rate of 0 or more.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"", "0", "50MB/s", "400Mbit/s", "1GiB/s", "1.5 GBps", "fast", "5mb/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			t.Errorf("ParseRate(%q) = %v", s, r)
		}
	})
}
