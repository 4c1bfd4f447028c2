package disk_test

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"voltar/internal/disk"
)

func TestUncoveredAndSkip(t *testing.T) {
	got := disk.Uncovered(100, []disk.Extent{{Offset: 50, Length: 10}, {Offset: 10, Length: 20}, {Offset: 55, Length: 10}})
	want := []disk.Extent{{0, 10}, {30, 20}, {65, 35}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Uncovered = %v, want %v", got, want)
	}
	if got := disk.Uncovered(10, []disk.Extent{{0, 10}}); len(got) != 0 {
		t.Errorf("fully covered: %v", got)
	}
	got = disk.Skip(disk.Extent{Offset: 0, Length: 1024}, []disk.Extent{{440, 72}, {900, 2000}})
	want = []disk.Extent{{0, 440}, {512, 388}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Skip = %v, want %v", got, want)
	}
	got = disk.Skip(disk.Extent{Offset: 4096, Length: 100}, []disk.Extent{{440, 72}})
	if !reflect.DeepEqual(got, []disk.Extent{{4096, 100}}) {
		t.Errorf("Skip with nothing inside = %v", got)
	}
}

func TestNonZeroRuns(t *testing.T) {
	vol := make([]byte, 64<<10)
	vol[0] = 1          // block 0
	vol[5000] = 2       // block 1
	vol[3*4096+17] = 3  // block 3, cut by the region at 12800
	vol[40000] = 4      // block 9, inside a covered part
	vol[len(vol)-1] = 5 // last block
	regions := []disk.Extent{{0, 12800}, {12800, 20000}, {60000, 64<<10 - 60000}}
	got, err := disk.NonZeroRuns(context.Background(), bytes.NewReader(vol), regions)
	if err != nil {
		t.Fatal(err)
	}
	want := []disk.Extent{{0, 8192}, {12288, 512}, {61440, 4096}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NonZeroRuns = %v, want %v", got, want)
	}
}

func TestNonZeroRunsShortRead(t *testing.T) {
	_, err := disk.NonZeroRuns(context.Background(), bytes.NewReader(make([]byte, 1000)), []disk.Extent{{0, 4096}})
	if err == nil {
		t.Error("a region past the end of the reader read as zeros")
	}
}
