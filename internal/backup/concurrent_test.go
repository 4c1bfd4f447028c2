package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// Volumes of one run backed up side by side each own their mount
// directories: one volume finishing never pulls a directory from under
// another one that is mounting (a run directory shared by all volumes and
// removed by whichever finished first did, now and then).
//
// VOLTAR_TEST_SOAK_RUNS sets the number of runs (make test-soak: 50).
func TestConcurrentVolumesOfOneRun(t *testing.T) {
	const volumes, concurrency = 40, 4
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("VOLTAR_TEST_SOAK_RUNS")); err == nil && n > 0 {
		runs = n
	}
	e := newEnv(t)
	dir := t.TempDir()
	img := testutil.MakeImage(t, dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 8, Fill: fillData}}})
	var vols []volume.Volume
	for i := range volumes {
		p := filepath.Join(dir, fmt.Sprintf("vol-%02d.img", i))
		testutil.Run(t, "cp", "--sparse=always", img, p)
		v, err := image.Resolve(p, true)
		if err != nil {
			t.Fatal(err)
		}
		vols = append(vols, v)
	}
	failures := 0
	for run := range runs {
		runID := fmt.Sprintf("run%d", run)
		j, err := cleanup.Start(e.state, runID)
		if err != nil {
			t.Fatal(err)
		}
		o := e.options(runID, j)
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, concurrency)
		for _, v := range vols {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if _, err := backup.Volume(context.Background(), v, o); err != nil {
					mu.Lock()
					failures++
					if failures <= 5 {
						t.Errorf("run %d: %v", run, err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := j.Finish(); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(e.runtime); len(left) > 0 {
			t.Errorf("run %d left %d entries in the runtime directory, e.g. %s", run, len(left), left[0].Name())
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d volume backups failed", failures, runs*volumes)
	}
}
