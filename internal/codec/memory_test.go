package codec

import "testing"

// TestWriterMemoryFlat checks that a zstd writer's memory stays within its
// budget for every thread count up to MaxAutoThreads, and that frames only
// shrink as threads grow.
func TestWriterMemoryFlat(t *testing.T) {
	prev := FrameSize
	for threads := 1; threads <= MaxAutoThreads; threads++ {
		f := frameSize(threads)
		if f > prev || f < minFrameSize || f&(f-1) != 0 {
			t.Errorf("%d threads: frame %d after %d", threads, f, prev)
		}
		prev = f
		if m := WriterMemory(Zstd, threads); m > zstdBudget {
			t.Errorf("%d threads: %d MiB, budget %d MiB", threads, m>>20, zstdBudget>>20)
		}
	}
	if frameSize(2) != FrameSize {
		t.Errorf("2 threads: frame %d, want the full %d", frameSize(2), FrameSize)
	}
	if got := Threads(0); got < 1 || got > MaxAutoThreads {
		t.Errorf("Threads(0) = %d", got)
	}
	if got := Threads(40); got != 40 {
		t.Errorf("Threads(40) = %d, an explicit count is kept", got)
	}
}
