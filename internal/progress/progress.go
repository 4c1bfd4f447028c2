// Package progress draws one bar per filesystem on a terminal. When stderr is
// not a terminal it draws nothing: logs tell the story there.
package progress

import (
	"fmt"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// Printer owns the bars of one command.
type Printer struct {
	p      *mpb.Progress
	mu     sync.Mutex
	waited bool
}

// New returns a Printer drawing on out when out is a terminal, else a
// Printer that draws nothing.
func New(out *os.File) *Printer {
	if out == nil {
		return &Printer{}
	}
	if _, err := unix.IoctlGetTermios(int(out.Fd()), unix.TCGETS); err != nil {
		return &Printer{}
	}
	return &Printer{p: mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithAutoRefresh())}
}

// Bar tracks one filesystem.
type Bar struct {
	b     *mpb.Bar
	files *int64
	mu    sync.Mutex
}

// Start adds a bar named name expecting about total bytes (0 if unknown).
func (p *Printer) Start(name string, total int64) *Bar {
	if p == nil || p.p == nil {
		return &Bar{}
	}
	var files int64
	bar := &Bar{files: &files}
	bar.b = p.p.AddBar(max(total, 1),
		mpb.PrependDecorators(decor.Name(name+" ", decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
			decor.Any(func(decor.Statistics) string {
				bar.mu.Lock()
				defer bar.mu.Unlock()
				return fmt.Sprintf("  %d files", files)
			}),
		),
	)
	return bar
}

// Update sets the bytes and files done so far.
func (b *Bar) Update(bytes, files int64) {
	if b == nil || b.b == nil {
		return
	}
	b.mu.Lock()
	*b.files = files
	b.mu.Unlock()
	if bytes > b.b.Current() {
		b.b.SetCurrent(bytes)
	}
}

// Done completes (ok) or aborts the bar.
func (b *Bar) Done(ok bool) {
	if b == nil || b.b == nil {
		return
	}
	if ok {
		b.b.SetTotal(-1, true)
	} else {
		b.b.Abort(false)
	}
}

// Wait flushes the bars once every bar is done; later calls do nothing.
func (p *Printer) Wait() {
	if p == nil || p.p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.waited {
		p.waited = true
		p.p.Wait()
	}
}
