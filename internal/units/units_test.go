package units_test

import (
	"testing"
	"time"

	"voltar/internal/units"
)

const (
	MiB = 1 << 20
	GiB = 1 << 30
)

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		// Under a minute in tenths: a sub-second volume is not "0s".
		{0, "0.0s"},
		{40 * time.Millisecond, "0.0s"},
		{400 * time.Millisecond, "0.4s"},
		{449 * time.Millisecond, "0.4s"},
		{450 * time.Millisecond, "0.5s"},
		{time.Second, "1.0s"},
		{12*time.Second + 340*time.Millisecond, "12.3s"},
		{59 * time.Second, "59.0s"},
		{59*time.Second + 600*time.Millisecond, "59.6s"},
		{59*time.Second + 940*time.Millisecond, "59.9s"},
		// What rounds to a minute is a minute.
		{59*time.Second + 950*time.Millisecond, "1m 0s"},
		{60 * time.Second, "1m 0s"},
		{60*time.Second + 400*time.Millisecond, "1m 0s"},
		{2*time.Minute + 3*time.Second, "2m 3s"},
		{time.Hour, "1h 0m 0s"},
		{time.Hour + 15*time.Minute + 35*time.Second, "1h 15m 35s"},
		{4535 * time.Second, "1h 15m 35s"}, // the classic printed this as "1 h 75 m"
		{26 * time.Hour, "26h 0m 0s"},
		{100*time.Hour + 59*time.Minute + 59*time.Second, "100h 59m 59s"},
		{-90 * time.Second, "-1m 30s"},
		{-400 * time.Millisecond, "-0.4s"},
	} {
		if got := units.Duration(c.d); got != c.want {
			t.Errorf("Duration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{-1, "unknown"},
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{MiB - 1, "1.0 MiB"},
		{3*GiB + GiB/2, "3.5 GiB"},
		{267 * GiB, "267.0 GiB"},
		{1 << 50, "1.0 PiB"},
		{1<<63 - 1, "8.0 EiB"},
	} {
		if got := units.Bytes(c.n); got != c.want {
			t.Errorf("Bytes(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}
