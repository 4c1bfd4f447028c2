package domain

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"voltar/internal/fail"
)

// DefaultSocket is libvirtd's (or virtqemud's) read-write socket of
// qemu:///system.
const DefaultSocket = "/var/run/libvirt/libvirt-sock"

// Client talks to libvirtd over its local socket with go-libvirt's RPC
// client (pure Go, no cgo, no virsh to parse). Every call takes a
// context: go-libvirt's calls do not, so a call whose context ends drops
// the connection, which fails the call, and the next call reconnects.
// Its methods are safe for concurrent use.
type Client struct {
	Socket string // "" = DefaultSocket

	mu sync.Mutex
	l  *golibvirt.Libvirt
}

// ErrUnavailable wraps failures to reach libvirtd at all.
var ErrUnavailable = errors.New("libvirt is not available")

// SocketPath is the socket the client dials.
func (c *Client) SocketPath() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

// conn returns the connection, dialing it when there is none.
func (c *Client) conn() (*golibvirt.Libvirt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.l != nil {
		select {
		case <-c.l.Disconnected():
			c.l = nil
		default:
			return c.l, nil
		}
	}
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(c.SocketPath()), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, fail.Hint(fmt.Errorf("%w: connect to %s: %v", ErrUnavailable, c.SocketPath(), err),
			"start libvirtd (or virtqemud), or set libvirt_socket in the config; `virsh -c qemu:///system list` must work")
	}
	c.l = l
	return l, nil
}

// drop closes the connection l (after a call was abandoned).
func (c *Client) drop(l *golibvirt.Libvirt) {
	c.mu.Lock()
	if c.l == l {
		c.l = nil
	}
	c.mu.Unlock()
	_ = l.Disconnect()
}

// Close drops the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	l := c.l
	c.l = nil
	c.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.Disconnect()
}

// call runs f on the connection, giving up (and dropping the connection)
// when ctx ends first.
func (c *Client) call(ctx context.Context, f func(l *golibvirt.Libvirt) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := c.conn()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.drop(l)
		return context.Cause(ctx)
	}
}

// Names lists every domain's name, running or not.
func (c *Client) Names(ctx context.Context) ([]string, error) {
	var out []string
	err := c.call(ctx, func(l *golibvirt.Libvirt) error {
		doms, _, err := l.ConnectListAllDomains(1, 0)
		for _, d := range doms {
			out = append(out, d.Name)
		}
		return err
	})
	return out, err
}

// Domain is one domain as found: its definition and whether it runs.
type Domain struct {
	Info
	Running bool
}

// live finds domain name and reads its live definition.
func live(l *golibvirt.Libvirt, name string) (golibvirt.Domain, Info, error) {
	d, err := l.DomainLookupByName(name)
	if err != nil {
		return d, Info{}, err
	}
	doc, err := l.DomainGetXMLDesc(d, 0)
	if err != nil {
		return d, Info{}, err
	}
	info, err := Parse(doc)
	return d, info, err
}

// Lookup reads the domain name's live definition.
func (c *Client) Lookup(ctx context.Context, name string) (Domain, error) {
	var out Domain
	err := c.call(ctx, func(l *golibvirt.Libvirt) error {
		d, info, err := live(l, name)
		if err != nil {
			return err
		}
		state, _, err := l.DomainGetState(d, 0)
		if err != nil {
			return err
		}
		out = Domain{Info: info, Running: golibvirt.DomainState(state) == golibvirt.DomainRunning}
		return nil
	})
	if err != nil {
		return Domain{}, fmt.Errorf("domain %s: %w", name, err)
	}
	return out, nil
}

// Freeze freezes the guest's filesystems through qemu-guest-agent and
// returns how many it froze.
func (c *Client) Freeze(ctx context.Context, name string) (int, error) {
	return c.guestFS(ctx, name, (*golibvirt.Libvirt).DomainFsfreeze)
}

// Thaw thaws the guest's filesystems and returns how many it thawed.
func (c *Client) Thaw(ctx context.Context, name string) (int, error) {
	return c.guestFS(ctx, name, (*golibvirt.Libvirt).DomainFsthaw)
}

// guestFS runs an agent call on all of domain name's filesystems.
func (c *Client) guestFS(ctx context.Context, name string, op func(*golibvirt.Libvirt, golibvirt.Domain, []string, uint32) (int32, error)) (int, error) {
	var n int32
	err := c.call(ctx, func(l *golibvirt.Libvirt) error {
		d, err := l.DomainLookupByName(name)
		if err != nil {
			return err
		}
		n, err = op(l, d, nil, 0)
		return err
	})
	return int(n), err
}

// NoAgent reports whether err says the guest has no working agent: none
// configured, not connected, or not answering.
func NoAgent(err error) bool {
	return hasCode(err, golibvirt.ErrAgentUnresponsive, golibvirt.ErrArgumentUnsupported,
		golibvirt.ErrOperationUnsupported, golibvirt.ErrNoSupport)
}

// NotRunning reports whether err says the domain is gone or not running.
func NotRunning(err error) bool {
	return hasCode(err, golibvirt.ErrNoDomain, golibvirt.ErrOperationInvalid)
}

func hasCode(err error, codes ...golibvirt.ErrorNumber) bool {
	var le golibvirt.Error
	if !errors.As(err, &le) {
		return false
	}
	for _, c := range codes {
		if le.Code == uint32(c) {
			return true
		}
	}
	return false
}

// SnapshotDisks makes an external disk-only snapshot of the running
// domain name: each disk of overlays (target -> file) goes on writing
// into a new qcow2 overlay file, libvirt's, whose backing file is the
// disk's image; every other disk is left out. Atomic (all or none) and
// without metadata: libvirt keeps no snapshot object to delete.
func (c *Client) SnapshotDisks(ctx context.Context, name string, overlays map[string]string) error {
	return c.call(ctx, func(l *golibvirt.Libvirt) error {
		d, info, err := live(l, name)
		if err != nil {
			return err
		}
		xml, err := snapshotXML(info, overlays)
		if err != nil {
			return err
		}
		flags := golibvirt.DomainSnapshotCreateDiskOnly | golibvirt.DomainSnapshotCreateAtomic | golibvirt.DomainSnapshotCreateNoMetadata
		_, err = l.DomainSnapshotCreateXML(d, xml, uint32(flags))
		return err
	})
}

// DiskSource is the file the domain's disk target reads now (its live
// definition; the inactive one when the domain does not run), and
// whether the domain runs.
func (c *Client) DiskSource(ctx context.Context, name, target string) (string, bool, error) {
	d, err := c.Lookup(ctx, name)
	if err != nil {
		return "", false, err
	}
	for _, k := range d.Disks {
		if k.Target == target {
			return k.Source, d.Running, nil
		}
	}
	return "", d.Running, fmt.Errorf("domain %s has no disk %s", name, target)
}

// commitPoll is how often Commit asks for the block job's progress.
const commitPoll = 100 * time.Millisecond

// Commit merges the top image of the running domain's disk target (an
// overlay) into the image below it, and pivots the disk back onto that
// image: an active, shallow block commit, waited for until it is ready,
// then ended with a pivot (virsh blockcommit --active --pivot). When ctx
// ends first the job is cancelled: the disk stays on the overlay, which
// holds every write since.
func (c *Client) Commit(ctx context.Context, name, target string) error {
	var dom golibvirt.Domain
	err := c.call(ctx, func(l *golibvirt.Libvirt) error {
		d, err := l.DomainLookupByName(name)
		if err != nil {
			return err
		}
		dom = d
		return l.DomainBlockCommit(d, target, nil, nil, 0, golibvirt.DomainBlockCommitActive|golibvirt.DomainBlockCommitShallow)
	})
	if err != nil {
		return fmt.Errorf("block commit of %s: %w", target, err)
	}
	tick := time.NewTicker(commitPoll)
	defer tick.Stop()
	for n := 1; ; n++ {
		var found int32
		var cur, end uint64
		err := c.call(ctx, func(l *golibvirt.Libvirt) error {
			var err error
			found, _, _, cur, end, err = l.DomainGetBlockJobInfo(dom, target, 0)
			return err
		})
		if err == nil && found == 0 {
			return fmt.Errorf("block commit of %s ended without a pivot (the job failed or was cancelled)", target)
		}
		if err == nil && (cur == end || n%10 == 0) {
			// Ready (the mirror caught up; a guest that writes all the
			// time may keep cur a little behind end even then, so
			// every tenth poll tries anyway): pivot. Not ready is an
			// error to wait out.
			err = c.call(ctx, func(l *golibvirt.Libvirt) error {
				return l.DomainBlockJobAbort(dom, target, golibvirt.DomainBlockJobAbortPivot)
			})
			if err == nil {
				return nil
			}
			if !hasCode(err, golibvirt.ErrBlockCopyActive, golibvirt.ErrOperationInvalid) {
				return fmt.Errorf("pivot %s: %w", target, err)
			}
		}
		if err != nil && ctx.Err() == nil && !hasCode(err, golibvirt.ErrBlockCopyActive, golibvirt.ErrOperationInvalid) {
			return fmt.Errorf("block commit of %s: %w", target, err)
		}
		select {
		case <-ctx.Done():
			// Cancel the job, not pivoting: the disk stays on the
			// overlay (libvirt's own cancel leaves it consistent).
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			c.call(cctx, func(l *golibvirt.Libvirt) error { return l.DomainBlockJobAbort(dom, target, 0) })
			cancel()
			return fmt.Errorf("block commit of %s: %w", target, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
