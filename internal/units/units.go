// Package units prints sizes and durations for people: "1.5 GiB", "1h 15m 35s",
// "12.3s".
package units

import (
	"fmt"
	"time"
)

// Bytes writes n in binary units: "512 B", "1.5 GiB". Negative n (the
// marker for unknown) is "unknown".
func Bytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	// 1023.96 KiB would print as "1024.0 KiB"; say 1.0 MiB instead.
	if v >= unit-0.05 && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}

// Duration writes d as "1h 15m 35s" or "2m 3s", rounded to the second,
// and under a minute in tenths of a second, "12.3s" or "0.4s", so that a
// small volume's backup does not read as taking no time at all. Hours are
// not folded into days, so that 26 hours reads "26h 0m 0s".
func Duration(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	if t := d.Round(100 * time.Millisecond); t < time.Minute {
		return fmt.Sprintf("%.1fs", t.Seconds())
	}
	s := int64(d.Round(time.Second) / time.Second)
	h, m, s := s/3600, s/60%60, s%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh %dm %ds", h, m, s)
	}
	return fmt.Sprintf("%dm %ds", m, s)
}
