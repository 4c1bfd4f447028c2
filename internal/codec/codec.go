// Package codec wraps the compressors voltar stores archives with. Every
// stream it writes is readable by the standard tools (zstd -d, gzip -d).
package codec

import (
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Names of the supported compressions.
const (
	Zstd = "zstd"
	Gzip = "gzip"
	None = "none"
)

// Valid reports whether c names a supported compression.
func Valid(c string) bool { return c == Zstd || c == Gzip || c == None }

// DefaultLevel is the level used when the config leaves it at 0.
func DefaultLevel(c string) int {
	switch c {
	case Zstd:
		return 3
	case Gzip:
		return 6
	}
	return 0
}

// MaxAutoThreads caps the compressor threads NewWriter starts when it is
// given none: 16 zstd threads compress ~5 GB/s, more than a volume host's
// disks deliver, and every thread costs memory.
const MaxAutoThreads = 16

// Threads returns the compressor threads NewWriter uses for threads: the
// value itself when > 0, else all cores up to MaxAutoThreads.
func Threads(threads int) int {
	if threads > 0 {
		return threads
	}
	return min(runtime.GOMAXPROCS(0), MaxAutoThreads)
}

// NewWriter compresses into w on Threads(threads) goroutines. The caller
// must Close the writer to flush the stream; closing does not close w.
// Memory is bounded whatever the stream's length, see WriterMemory.
func NewWriter(w io.Writer, c string, level, threads int) (io.WriteCloser, error) {
	return NewWriterFrames(w, c, level, threads, 0)
}

// SmallFrame is the frame size for small objects written alongside a big
// one (a file index beside its archive): with one thread, a zstd writer
// of 1 MiB frames holds ~7 MiB.
const SmallFrame = minFrameSize

// NewWriterFrames is NewWriter with zstd frames of frame input bytes
// (0: picked by threads, see NewWriter).
func NewWriterFrames(w io.Writer, c string, level, threads, frame int) (io.WriteCloser, error) {
	threads = Threads(threads)
	if level == 0 {
		level = DefaultLevel(c)
	}
	if frame <= 0 {
		frame = frameSize(threads)
	}
	switch c {
	case Zstd:
		return newZstdWriter(w, level, threads, frame)
	case Gzip:
		gw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("gzip level %d: %w", level, err)
		}
		if err := gw.SetConcurrency(1<<20, threads*2); err != nil {
			return nil, err
		}
		return gw, nil
	case None:
		return &chunker{w: w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (want zstd, gzip or none)", c)
}

// NewReader decompresses r. The caller must Close the reader.
func NewReader(r io.Reader, c string) (io.ReadCloser, error) {
	switch c {
	case Zstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, err
		}
		return zstdReadCloser{d}, nil
	case Gzip:
		return pgzip.NewReader(r)
	case None:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }

// FrameSize is the largest input size of one zstd frame. A stream of zstd
// is compressed as a sequence of independent frames, one per thread at a
// time: klauspost's streaming encoder compresses one block after the other
// on a single core whatever its concurrency, and a frame is the unit that
// can be compressed in parallel and still be read by `zstd -d`
// (concatenated frames decompress as one stream). Each frame restarts the
// match window, which costs about 0.3% of output size at 8 MiB (0.6% at
// 4 MiB, 0.1% at 16 MiB; measured on bench/run.sh's corpus).
const FrameSize = 8 << 20

// minFrameSize is the smallest frame frameSize picks.
const minFrameSize = 1 << 20

// zstdBudget bounds the memory of one zstd writer: threads+1 frames of
// input and output, and each encoder's history of one frame and tables.
const zstdBudget = 96 << 20

// encoderTables is what one zstd encoder holds besides its history (the
// match tables of the default level, ~2 MiB).
const encoderTables = 2 << 20

// frameSize picks the frame size for threads compressors: FrameSize
// halved until the writer's memory (zstdMemory) fits zstdBudget, but not
// below minFrameSize. More threads get smaller frames, so memory stays
// flat as threads grow: 8 MiB frames up to 3 threads, 4 MiB up to 6,
// 2 MiB up to 11, 1 MiB beyond (96 MiB at most up to 16 threads).
func frameSize(threads int) int {
	f := FrameSize
	for f > minFrameSize && zstdMemory(threads, f) > zstdBudget {
		f /= 2
	}
	return f
}

// zstdMemory is what a zstd writer with threads encoders and frames of
// frame bytes holds at most: threads+1 frames in flight (input and
// output), and per encoder one frame of history (WithLowerEncoderMem) and
// its tables.
func zstdMemory(threads, frame int) int {
	return (3*threads+2)*frame + threads*encoderTables
}

// WriterMemory is the most memory a writer of NewWriter holds with
// Threads(threads) threads, whatever the stream's length: for zstd see
// zstdMemory (68 MiB with 2 threads, 82 MiB with 16); for gzip (pgzip),
// 2*threads blocks of 1 MiB in and out plus ~1 MiB of deflate state per
// thread.
func WriterMemory(c string, threads int) int64 {
	t := Threads(threads)
	switch c {
	case Zstd:
		return int64(zstdMemory(t, frameSize(t)))
	case Gzip:
		return int64(t * 5 << 20)
	}
	return 0
}

// zstdWriter cuts the stream into frames and compresses them on up to
// threads goroutines; one goroutine writes the finished frames in order.
type zstdWriter struct {
	w     io.Writer
	frame int // input bytes per frame
	cur   *zstdFrame
	free  chan *zstdFrame // frames not in use; len(pool) bounds memory
	todo  chan *zstdFrame // to the compressors
	out   chan *zstdFrame // to the writer, in stream order
	done  chan struct{}   // closed when the writer goroutine has ended
	encs  sync.WaitGroup
	mu    sync.Mutex
	err   error // first error of w
	any   bool  // a frame was submitted
	// frames are the frames written, in order (the writer goroutine's
	// until done is closed).
	frames []Frame
	c, u   int64 // stream offsets after the frames written
}

type zstdFrame struct {
	in, out []byte
	sum     [sha256.Size]byte
	err     error // of the encoder
	ready   chan struct{}
}

func newZstdWriter(w io.Writer, level, threads, frame int) (*zstdWriter, error) {
	z := &zstdWriter{
		w:     w,
		frame: frame,
		free:  make(chan *zstdFrame, threads+1),
		todo:  make(chan *zstdFrame, threads+1),
		out:   make(chan *zstdFrame, threads+1),
		done:  make(chan struct{}),
	}
	for range threads {
		enc, err := newFrameEncoder(level, frame)
		if err != nil {
			return nil, err
		}
		z.encs.Go(func() {
			for f := range z.todo {
				f.out, f.err = enc.encode(f.out[:0], f.in)
				if f.err == nil {
					f.sum = sha256.Sum256(f.out)
				}
				f.ready <- struct{}{}
			}
			enc.close()
		})
	}
	for range threads + 1 {
		z.free <- &zstdFrame{ready: make(chan struct{}, 1)}
	}
	go z.write()
	z.cur = <-z.free
	return z, nil
}

func (z *zstdWriter) write() {
	defer close(z.done)
	for f := range z.out {
		<-f.ready
		if f.err != nil {
			z.mu.Lock()
			if z.err == nil {
				z.err = fmt.Errorf("zstd: %w", f.err)
			}
			z.mu.Unlock()
		}
		if z.error() == nil {
			if _, err := z.w.Write(f.out); err != nil {
				z.mu.Lock()
				z.err = err
				z.mu.Unlock()
			} else {
				fr := Frame{COff: z.c, CSize: int64(len(f.out)), UOff: z.u, USize: int64(len(f.in)), SHA256: f.sum}
				z.frames = append(z.frames, fr)
				z.c += fr.CSize
				z.u += fr.USize
			}
		}
		z.free <- f
	}
}

func (z *zstdWriter) error() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}

// submit hands the current frame on and waits for a free one, which is
// what throttles a producer faster than the compressors.
func (z *zstdWriter) submit() {
	z.any = true
	z.out <- z.cur
	z.todo <- z.cur
	z.cur = <-z.free
	z.cur.in = z.cur.in[:0]
}

func (z *zstdWriter) Write(p []byte) (int, error) {
	if err := z.error(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if z.cur.in == nil {
			// Output of incompressible input is slightly larger.
			z.cur.in = make([]byte, 0, z.frame)
			z.cur.out = make([]byte, 0, z.frame+z.frame/64+4096)
		}
		k := min(len(p), z.frame-len(z.cur.in))
		z.cur.in = append(z.cur.in, p[:k]...)
		p = p[k:]
		if len(z.cur.in) == z.frame {
			z.submit()
		}
	}
	return n, nil
}

// Close compresses what is buffered, writes every frame and the seek
// table (see Frames) and releases the compressors. An empty stream still
// gets one (empty) frame.
func (z *zstdWriter) Close() error {
	if z.todo == nil {
		return z.error()
	}
	if len(z.cur.in) > 0 || !z.any {
		z.submit()
	}
	close(z.todo)
	close(z.out)
	<-z.done
	z.encs.Wait()
	z.todo = nil
	if err := z.error(); err != nil {
		return err
	}
	_, err := z.w.Write(seekTable(z.frames))
	return err
}

// Frames lists the stream's frames once Close returned. The stream ends
// with a seek table of them in the zstd seekable format, a skippable
// frame that zstd -d passes over.
func (z *zstdWriter) Frames() []Frame { return z.frames }
