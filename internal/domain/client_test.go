package domain_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"voltar/internal/domain"
	"voltar/internal/testutil"
)

// The client against a real libvirtd: a running domain without a guest
// agent channel (it boots nothing; libvirt answers for it all the same).
func TestClientRealLibvirt(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "virsh", "qemu-system-x86_64")
	c := &domain.Client{}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Names(ctx); err != nil {
		testutil.Unavailable(t, "libvirtd does not answer on %s (scripts/start-libvirtd.sh starts it): %v", domain.DefaultSocket, err)
	}
	name := fmt.Sprintf("voltar-client-test-%d", os.Getpid())
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	testutil.Run(t, "truncate", "-s", "1M", img)
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>`, name, img)
	p := filepath.Join(dir, "domain.xml")
	os.WriteFile(p, []byte(xml), 0o644)
	testutil.Run(t, "virsh", "-q", "-c", "qemu:///system", "create", p)
	t.Cleanup(func() { exec.Command("virsh", "-q", "-c", "qemu:///system", "destroy", name).Run() })

	names, err := c.Names(ctx)
	if err != nil || !slices.Contains(names, name) {
		t.Fatalf("Names = %v, %v; want %s among them", names, err, name)
	}
	d, err := c.Lookup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Running || d.UUID == "" || len(d.Disks) != 2 || d.Disks[0].Source != img || d.Disks[0].Skip != "" || d.Disks[1].Skip == "" {
		t.Errorf("Lookup = %+v", d)
	}
	if _, err := c.Freeze(ctx, name); !domain.NoAgent(err) {
		t.Errorf("Freeze without an agent channel: %v; want an error NoAgent knows", err)
	}
	if _, err := c.Thaw(ctx, name); !domain.NoAgent(err) {
		t.Errorf("Thaw without an agent channel: %v; want an error NoAgent knows", err)
	}
	if _, err := c.Freeze(ctx, name+"-gone"); !domain.NotRunning(err) {
		t.Errorf("Freeze of no domain: %v; want an error NotRunning knows", err)
	}
	// The sweep's thaw of such a domain has nothing to do, and succeeds.
	thaw := domain.ThawLeftover(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, n := range []string{name, name + "-gone"} {
		ref := domain.FreezeRef{Socket: domain.DefaultSocket, Domain: n}.String()
		if err := thaw(ctx, ref); err != nil {
			t.Errorf("ThawLeftover(%s): %v", n, err)
		}
	}
	// A call whose context ended fails at once; the client goes on.
	dead, stop := context.WithCancel(ctx)
	stop()
	if _, err := c.Names(dead); err == nil {
		t.Error("Names with a cancelled context succeeded")
	}
	if _, err := c.Names(ctx); err != nil {
		t.Errorf("Names after a cancelled call: %v", err)
	}
}

// No libvirtd on a socket: an error that says so, with a hint.
func TestClientUnavailable(t *testing.T) {
	c := &domain.Client{Socket: filepath.Join(t.TempDir(), "no-such-sock")}
	_, err := c.Names(context.Background())
	if err == nil || !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Names without libvirtd: %v; want ErrUnavailable", err)
	}
}
