package cleanup_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"voltar/internal/cleanup"
)

func TestSweepReleasesOutstandingNewestFirst(t *testing.T) {
	dir := t.TempDir()
	j, err := cleanup.Start(dir, "run1")
	if err != nil {
		t.Fatal(err)
	}
	j.Add(cleanup.LV, "vg/volume-1-voltar-run1")
	j.Add(cleanup.Loop, "/dev/loop3")
	j.Add(cleanup.Mount, "/run/voltar/run1/p1")
	j.Done(cleanup.Mount, "/run/voltar/run1/p1")
	j.Add(cleanup.Mount, "/run/voltar/run1/p2")
	// The process dies here: no Finish.

	var got []string
	h := func(ctx context.Context, ref string) error { got = append(got, ref); return nil }
	handlers := map[string]cleanup.Handler{cleanup.LV: h, cleanup.Loop: h, cleanup.Mount: h}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := cleanup.SweepJournals(context.Background(), dir, handlers, log); err != nil {
		t.Fatal(err)
	}
	want := []string{"/run/voltar/run1/p2", "/dev/loop3", "vg/volume-1-voltar-run1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("released %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "runs", "run1.journal")); !os.IsNotExist(err) {
		t.Fatalf("journal still present after a full sweep: %v", err)
	}
}

func TestSweepKeepsJournalWhenReleaseFails(t *testing.T) {
	dir := t.TempDir()
	j, _ := cleanup.Start(dir, "run2")
	j.Add(cleanup.LV, "vg/snap")
	handlers := map[string]cleanup.Handler{cleanup.LV: func(context.Context, string) error { return errors.New("device busy") }}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := cleanup.SweepJournals(context.Background(), dir, handlers, log); err == nil {
		t.Fatal("sweep with a failing release returned nil")
	}
	if _, err := os.Stat(filepath.Join(dir, "runs", "run2.journal")); err != nil {
		t.Fatalf("journal removed although a resource is still held: %v", err)
	}
}

// A release that can wait (cleanup.Later) keeps the journal without failing
// the sweep; the other resources are still released.
func TestSweepLaterKeepsJournalWithoutFailing(t *testing.T) {
	dir := t.TempDir()
	j, _ := cleanup.Start(dir, "run3")
	j.Add(cleanup.Partial, "s3://b/p\th/vg/v/ts")
	j.Add(cleanup.Mount, "/run/voltar/run3/p1")
	var got []string
	handlers := map[string]cleanup.Handler{
		cleanup.Partial: func(context.Context, string) error { return cleanup.Later(errors.New("endpoint unreachable")) },
		cleanup.Mount:   func(ctx context.Context, ref string) error { got = append(got, ref); return nil },
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	released, err := cleanup.SweepJournals(context.Background(), dir, handlers, log)
	if err != nil {
		t.Fatalf("sweep failed on a release that can wait: %v", err)
	}
	if len(released) != 1 || len(got) != 1 {
		t.Fatalf("released %v (handler saw %v), want the mount", released, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "runs", "run3.journal")); err != nil {
		t.Fatalf("journal removed although the partial backup is still there: %v", err)
	}
	// The next sweep retries only what is still held.
	got = nil
	released, err = cleanup.SweepJournals(context.Background(), dir, handlers, log)
	if err != nil || len(released) != 0 || len(got) != 0 {
		t.Fatalf("second sweep released %v (handler saw %v), err %v; want nothing again", released, got, err)
	}
}

func TestFinishRemovesOnlyWhenAllReleased(t *testing.T) {
	dir := t.TempDir()
	j, _ := cleanup.Start(dir, "run3")
	j.Add(cleanup.Clone, "/x")
	if err := j.Finish(); err == nil {
		t.Fatal("Finish with an unreleased clone returned nil")
	}
	j2, _ := cleanup.Start(dir, "run4")
	j2.Add(cleanup.Clone, "/y")
	j2.Done(cleanup.Clone, "/y")
	if err := j2.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "runs", "run4.journal")); !os.IsNotExist(err) {
		t.Fatal("journal kept after all resources were released")
	}
}
