package storetest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"voltar/internal/store"
	"voltar/internal/store/storetest"
)

func TestMemoryKeepsTheContract(t *testing.T) {
	storetest.Run(t, storetest.NewMemory())
}

// Without faults, a Faulty store is the store it wraps.
func TestFaultyWithoutFaultsKeepsTheContract(t *testing.T) {
	storetest.Run(t, storetest.NewFaulty(storetest.NewMemory()))
}

var errBoom = errors.New("boom")

func put(t *testing.T, st store.Store, key, data string) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, strings.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func read(st store.Store, key string) (string, error) {
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// A Put fault takes AfterBytes of the source, fails, and stores nothing;
// Nth hits only that call.
func TestFaultyPut(t *testing.T) {
	mem := storetest.NewMemory()
	f := storetest.NewFaulty(mem, &storetest.Fault{Op: storetest.OpPut, KeySuffix: ".zst", Nth: 2, Err: errBoom, AfterBytes: 3})
	ctx := context.Background()
	put(t, f, "a/1.zst", "first")
	src := strings.NewReader("second")
	n, err := f.Put(ctx, "a/2.zst", src, store.PutOptions{})
	if !errors.Is(err, errBoom) || n != 3 || src.Len() != 3 {
		t.Errorf("Put = %d, %v (source left %d); want 3, boom, 3 left", n, err, src.Len())
	}
	put(t, f, "a/3.zst", "third")
	put(t, f, "a/SHA256SUMS", "sums")
	if got, want := strings.Join(mem.Keys(), " "), "a/1.zst a/3.zst a/SHA256SUMS"; got != want {
		t.Errorf("stored %s, want %s", got, want)
	}
}

// A Get fault fails the read after AfterBytes, cancels there, or flips
// one byte.
func TestFaultyGet(t *testing.T) {
	mem := storetest.NewMemory()
	put(t, mem, "k", "0123456789")
	ctx, cancel := context.WithCancel(context.Background())
	for _, tc := range []struct {
		name  string
		fault storetest.Fault
		want  string
		err   error
	}{
		{"error", storetest.Fault{Err: errBoom, AfterBytes: 4}, "0123", errBoom},
		{"error-at-once", storetest.Fault{Err: errBoom}, "", errBoom},
		{"corrupt", storetest.Fault{Corrupt: true, CorruptAt: 9}, "012345678" + string([]byte{'9' ^ 0xff}), nil},
		{"cancel", storetest.Fault{Cancel: cancel, AfterBytes: 5}, "0123456789", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := tc.fault
			ft.Op = storetest.OpGet
			got, err := read(storetest.NewFaulty(mem, &ft), "k")
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("read %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
	if ctx.Err() == nil {
		t.Error("the cancel fault did not cancel")
	}
}

// A List fault drops one page of objects.
func TestFaultyListDropsAPage(t *testing.T) {
	mem := storetest.NewMemory()
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		put(t, mem, "p/"+k, k)
	}
	f := storetest.NewFaulty(mem, &storetest.Fault{Op: storetest.OpList, DropPage: 2, PageSize: 2})
	objs, err := f.List(context.Background(), "p/")
	if err != nil {
		t.Fatal(err)
	}
	var keys bytes.Buffer
	for _, o := range objs {
		keys.WriteString(o.Key + " ")
	}
	if got, want := keys.String(), "p/a p/b p/e "; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}
	if all, _ := mem.List(context.Background(), "p/"); len(all) != 5 {
		t.Errorf("the wrapped store lost objects: %d left", len(all))
	}
}

// usageStore has an optional interface a wrapper must not hide.
type usageStore struct{ *storetest.Memory }

func (usageStore) Usage(context.Context) (store.Usage, error) { return store.Usage{Size: 7}, nil }

func TestAsSeesThroughWrappers(t *testing.T) {
	st := storetest.NewFaulty(storetest.NewFaulty(usageStore{storetest.NewMemory()}))
	if _, ok := st.Store.(store.Space); ok {
		t.Fatal("test is void: the wrapper itself has Usage")
	}
	sp, ok := store.As[store.Space](st)
	if !ok {
		t.Fatal("As did not find store.Space under two wrappers")
	}
	if u, _ := sp.Usage(context.Background()); u.Size != 7 {
		t.Errorf("Usage = %+v, want the wrapped store's", u)
	}
	if _, ok := store.As[store.TempRemover](st); ok {
		t.Error("As found a TempRemover no store in the chain has")
	}
}

func readRange(st store.Store, key string, off, n int64) (string, error) {
	rc, err := store.ReadRange(context.Background(), st, key, off, n)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// A GetRange fault fails the range's reader after AfterBytes of the range,
// cancels there, or flips the object's byte at CorruptAt when the range
// holds it; Observe sees the range, and the faults of Get miss it.
func TestFaultyGetRange(t *testing.T) {
	mem := storetest.NewMemory()
	put(t, mem, "k", "0123456789")
	ctx, cancel := context.WithCancel(context.Background())
	for _, tc := range []struct {
		name  string
		fault storetest.Fault
		want  string
		err   error
	}{
		{"error", storetest.Fault{Op: storetest.OpGetRange, Err: errBoom, AfterBytes: 2}, "34", errBoom},
		{"error-at-once", storetest.Fault{Op: storetest.OpGetRange, Err: errBoom}, "", errBoom},
		{"corrupt", storetest.Fault{Op: storetest.OpGetRange, Corrupt: true, CorruptAt: 5}, "34" + string([]byte{'5' ^ 0xff}) + "6", nil},
		{"corrupt-elsewhere", storetest.Fault{Op: storetest.OpGetRange, Corrupt: true, CorruptAt: 1}, "3456", nil},
		{"cancel", storetest.Fault{Op: storetest.OpGetRange, Cancel: cancel, AfterBytes: 2}, "3456", nil},
		{"get-fault", storetest.Fault{Op: storetest.OpGet, Err: errBoom}, "3456", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := tc.fault
			f := storetest.NewFaulty(mem, &ft)
			var calls []storetest.Call
			f.Observe = func(c storetest.Call) { calls = append(calls, c) }
			got, err := readRange(f, "k", 3, 4)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("read %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
			if len(calls) != 1 || calls[0].Op != storetest.OpGetRange || calls[0].Off != 3 || calls[0].N != 4 {
				t.Errorf("observed %+v, want one GetRange of 3, 4", calls)
			}
		})
	}
	if ctx.Err() == nil {
		t.Error("the cancel fault did not cancel")
	}
}

// getOnly hides every optional interface of the store it holds: it has
// Get but no GetRange, and no Unwrap.
type getOnly struct{ store.Store }

// Ranged reads of a store without GetRange (Get, dropping the bytes
// before the range) keep the contract, also through a Faulty.
func TestRangedReadsWithoutGetRangeKeepTheContract(t *testing.T) {
	t.Run("bare", func(t *testing.T) { storetest.Run(t, getOnly{storetest.NewMemory()}) })
	t.Run("faulty", func(t *testing.T) { storetest.Run(t, storetest.NewFaulty(getOnly{storetest.NewMemory()})) })
}
