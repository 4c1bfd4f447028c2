package nightly_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/lock"
	"voltar/internal/nightly"
	"voltar/internal/report"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/store/s3"
	"voltar/internal/store/storetest"
	"voltar/internal/testutil"
)

// Every kind of error a run can report comes with at least one hint: the
// operator who reads only the mail learns what to do. Each case makes the
// error the way a run does (a nightly run with an injected store fault, a
// failing snapshot or preflight, or the function that fails) and returns
// the problems it would report.
func TestEveryErrorHasAHint(t *testing.T) {
	ctx := context.Background()
	// run is a nightly run of a.img on st, snapshotted by snap, whose
	// report's problems are returned.
	run := func(t *testing.T, st store.Store, snap *fakeSnapshotter, edit func(*nightly.Options)) []report.Problem {
		if snap == nil {
			snap = &fakeSnapshotter{}
		}
		o := options(t, st, snap, "a.img")
		if edit != nil {
			edit(&o)
		}
		return problems(nightly.Run(ctx, o))
	}
	faulty := func(f storetest.Fault) store.Store { return storetest.NewFaulty(storetest.NewMemory(), &f) }
	pathErr := func(op string, errno syscall.Errno) error {
		return &fs.PathError{Op: op, Path: "/srv/backup/h/image/a.img/2026-12-06T013000Z", Err: errno}
	}

	for _, c := range []struct {
		name     string
		problems func(t *testing.T) []report.Problem
	}{
		// The store, while a backup is written.
		{"store: mkdir operation not permitted", func(t *testing.T) []report.Problem {
			return run(t, faulty(storetest.Fault{Op: storetest.OpPut, KeySuffix: ".zst", Err: pathErr("mkdir", syscall.EPERM)}), nil, nil)
		}},
		{"store: permission denied", func(t *testing.T) []report.Problem {
			return run(t, faulty(storetest.Fault{Op: storetest.OpPut, KeySuffix: ".zst", Err: pathErr("open", syscall.EACCES)}), nil, nil)
		}},
		{"store: disk full", func(t *testing.T) []report.Problem {
			return run(t, faulty(storetest.Fault{Op: storetest.OpPut, KeySuffix: ".zst", Err: pathErr("write", syscall.ENOSPC), AfterBytes: 1000}), nil, nil)
		}},
		{"store: quota exceeded", func(t *testing.T) []report.Problem {
			return run(t, faulty(storetest.Fault{Op: storetest.OpPut, KeySuffix: ".zst", Err: pathErr("write", syscall.EDQUOT)}), nil, nil)
		}},
		{"store: read-only filesystem, on the manifest", func(t *testing.T) []report.Problem {
			return run(t, faulty(storetest.Fault{Op: storetest.OpPut, KeySuffix: "manifest.json", Err: pathErr("open", syscall.EROFS)}), nil, nil)
		}},
		{"store: SHA256SUMS, an error of no known kind", func(t *testing.T) []report.Problem {
			return run(t, faulty(storetest.Fault{Op: storetest.OpPut, KeySuffix: "SHA256SUMS", Err: errors.New("unexpected EOF")}), nil, nil)
		}},
		{"store: unreachable (S3 connection refused)", func(t *testing.T) []report.Problem {
			refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			return run(t, faulty(storetest.Fault{Op: storetest.OpList, Err: refused}), nil, nil)
		}},
		{"store: prune refused", func(t *testing.T) []report.Problem {
			mem := storetest.NewMemory()
			catalogtest.Write(t, mem, catalogtest.Folder{Host: host, Group: "image", Volume: "a.img", Time: time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC),
				Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("f", 0o644, "old")), "zstd")}}})
			return run(t, storetest.NewFaulty(mem, &storetest.Fault{Op: storetest.OpDelete, Err: pathErr("unlinkat", syscall.EPERM)}), nil, nil)
		}},

		// The volume.
		{"snapshot failed (the tool's error, no hint of its own)", func(t *testing.T) []report.Problem {
			snap := &fakeSnapshotter{fail: map[string]error{"a.img": errors.New("lvcreate: exit status 5: Volume group \"vg0\" has insufficient free space")}}
			return run(t, storetest.NewMemory(), snap, nil)
		}},

		// The run's preflight.
		{"preflight: store missing", func(t *testing.T) []report.Problem {
			return run(t, local.New(filepath.Join(t.TempDir(), "missing")), nil, nil)
		}},
		{"preflight: store is a file", func(t *testing.T) []report.Problem {
			f := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return run(t, local.New(f), nil, nil)
		}},
		{"preflight: backup disk not mounted", func(t *testing.T) []report.Problem {
			dir := t.TempDir()
			return run(t, local.New(dir), nil, func(o *nightly.Options) { o.RequireMount = dir })
		}},
		{"preflight: less free than min_free_percent", func(t *testing.T) []report.Problem {
			return run(t, local.New(t.TempDir()), nil, func(o *nightly.Options) { o.MinFreePercent = 100 })
		}},

		// Before the run: the lock, the S3 store.
		{"lock held", func(t *testing.T) []report.Problem {
			dir := t.TempDir()
			l, err := lock.Acquire(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			_, err = lock.Acquire(dir)
			return problemOf(t, err)
		}},
		{"S3 unreachable", func(t *testing.T) []report.Problem {
			st, err := s3.New(s3.Config{Endpoint: "127.0.0.1:1", Bucket: "backups", Credentials: s3.Credentials{AccessKey: "k", SecretKey: "s"}})
			if err != nil {
				t.Fatal(err)
			}
			return problemOf(t, st.Check(ctx))
		}},
		{"S3 bucket missing", func(t *testing.T) []report.Problem {
			srv := testutil.S3(t)
			st, err := s3.New(s3.Config{Endpoint: srv.Endpoint, Bucket: "voltar-no-such-bucket",
				Credentials: s3.Credentials{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}})
			if err != nil {
				t.Fatal(err)
			}
			return problemOf(t, st.Check(ctx))
		}},

		// A database dump.
		{"dump: instance unreachable", func(t *testing.T) []report.Problem {
			testutil.RequireTools(t, "ssh-keygen")
			dir := t.TempDir()
			kh := filepath.Join(dir, "known_hosts")
			if err := os.WriteFile(kh, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			key := filepath.Join(dir, "id_ed25519")
			testutil.Run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
			return run(t, storetest.NewMemory(), nil, func(o *nightly.Options) {
				o.Jobs = nil
				o.Dumps = []dump.Target{{Name: "db1", Host: "127.0.0.1", Port: 1, User: "root", KeyFile: key, KnownHosts: kh, Timeout: 10 * time.Second}}
			})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := c.problems(t)
			if len(ps) == 0 {
				t.Fatal("no error reported")
			}
			for _, p := range ps {
				t.Logf("%s\n  hints: %q", p.Message, p.Hints)
				if len(p.Hints) == 0 {
					t.Errorf("no hint for %q", p.Message)
				}
			}
		})
	}
}

// problems are every error a report holds: the run's, the volumes', the
// dumps'. A skipped row's "not attempted" is left out: it points to the
// run's error, whose hint is what to do.
func problems(r *report.Run) []report.Problem {
	ps := append([]report.Problem(nil), r.Errors...)
	for _, v := range r.Volumes {
		if v.Err != nil && v.Status != report.StatusSkipped {
			ps = append(ps, *v.Err)
		}
	}
	for _, d := range r.Dumps {
		if d.Err != nil && d.Status != report.StatusSkipped {
			ps = append(ps, *d.Err)
		}
	}
	return ps
}

// problemOf is err as a report shows it (the report of an aborted run).
func problemOf(t *testing.T, err error) []report.Problem {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	return []report.Problem{{Message: err.Error(), Hints: fail.Hints(err)}}
}
