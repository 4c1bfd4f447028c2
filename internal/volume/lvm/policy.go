package lvm

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Policy sizes snapshots. Exactly one field is set.
//
// Percent is a share of what a complete copy of the origin takes in a thick
// snapshot: the origin's size plus LVM's exception metadata (about 0.4%),
// rounded up to whole extents. So 100%ORIGIN is the size that can never
// overflow, the same size `lvcreate -l 100%ORIGIN` allocates. For a thin
// snapshot the share applies to the origin's mapped data.
//
// Bytes is a fixed size, rounded up to whole extents and capped at the
// never-overflow size (LVM caps it there too).
type Policy struct {
	Percent float64
	Bytes   int64
}

// DefaultPolicy is 100%ORIGIN: snapshots that cannot overflow.
var DefaultPolicy = Policy{Percent: 100}

// ParsePolicy parses a snapshot size: "100%ORIGIN", "20%ORIGIN", or a size
// with a binary unit as lvcreate takes them: "10G", "512M", "1.5T", "65536"
// (bytes; also "64K", "10GiB"). Empty means DefaultPolicy.
func ParsePolicy(s string) (Policy, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultPolicy, nil
	}
	if num, ok := cutSuffixFold(s, "%ORIGIN"); ok {
		p, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
			return Policy{}, fmt.Errorf("snapshot size %q: want a percentage in (0, 100] before %%ORIGIN", s)
		}
		return Policy{Percent: p}, nil
	}
	if strings.Contains(s, "%") {
		return Policy{}, fmt.Errorf("snapshot size %q: only N%%ORIGIN percentages are supported", s)
	}
	n, err := parseSize(s)
	if err != nil {
		return Policy{}, fmt.Errorf("snapshot size %q: %w", s, err)
	}
	return Policy{Bytes: n}, nil
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return strings.TrimSpace(s[:len(s)-len(suffix)]), true
	}
	return s, false
}

// parseSize parses "10G", "512MiB", "1.5t", "4096" (bytes).
func parseSize(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult, ok := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tib": 1 << 40,
		"p": 1 << 50, "pib": 1 << 50,
	}[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (use K, M, G, T or P, powers of 1024, or %%ORIGIN)", unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("want a positive size such as 10G or 512M")
	}
	b := math.Ceil(f * mult)
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("too large")
	}
	return int64(b), nil
}

// String formats p the way ParsePolicy reads it.
func (p Policy) String() string {
	if p.Bytes > 0 {
		for _, u := range []struct {
			suffix string
			size   int64
		}{{"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
			if p.Bytes%u.size == 0 {
				return strconv.FormatInt(p.Bytes/u.size, 10) + u.suffix
			}
		}
		return strconv.FormatInt(p.Bytes, 10)
	}
	pct := p.Percent
	if pct <= 0 {
		pct = 100
	}
	return strconv.FormatFloat(pct, 'f', -1, 64) + "%ORIGIN"
}

// chunkSize is lvcreate's default snapshot chunk size; voltar does not pass -c.
const chunkSize = 4096

// cowMax is the COW size that holds a complete copy of an origin of the
// given size, rounded up to extents: LVM's cow_max_extents for a kernel
// whose snapshot target no longer leaks chunks (all current ones). Layout:
// one header chunk, the data chunks, and one metadata chunk per chunk/16
// exceptions plus a terminator.
func cowMax(originSize, extent int64) int64 {
	dataChunks := (originSize + chunkSize - 1) / chunkSize
	perMetadataChunk := int64(chunkSize / 16)
	metadataChunks := (dataChunks + perMetadataChunk) / perMetadataChunk
	return roundUp((1+dataChunks+metadataChunks)*chunkSize, extent)
}

// thickSize is the COW size p gives a thick snapshot of an origin.
func (p Policy) thickSize(originSize, extent int64) int64 {
	full := cowMax(originSize, extent)
	if p.Bytes > 0 {
		return min(roundUp(p.Bytes, extent), full)
	}
	if p.Percent <= 0 || p.Percent >= 100 {
		return full
	}
	return roundUp(int64(math.Ceil(float64(full)*p.Percent/100)), extent)
}

// thinNeed is the pool space a thin snapshot may claim while the origin
// keeps being written: at most every block the two still share, that is the
// origin's mapped data; p scales or caps that.
func (p Policy) thinNeed(mapped int64) int64 {
	if p.Bytes > 0 {
		return min(p.Bytes, mapped)
	}
	if p.Percent <= 0 || p.Percent >= 100 {
		return mapped
	}
	return int64(math.Ceil(float64(mapped) * p.Percent / 100))
}

func roundUp(n, unit int64) int64 {
	if unit <= 0 {
		return n
	}
	return (n + unit - 1) / unit * unit
}
