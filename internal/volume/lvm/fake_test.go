package lvm_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/sysexec"
	"voltar/internal/volume/lvm"
)

// The report fields the package must ask for; testdata was captured with
// them (TestCaptureScriptFields keeps the capture script in step).
const (
	lvsFields = "lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_tags,origin,pool_lv," +
		"data_percent,snap_percent,metadata_percent,lv_path,lv_active,segtype," +
		"lv_layout,lv_role,lv_snapshot_invalid,lv_health_status"
	vgsFields = "vg_name,vg_size,vg_free,vg_extent_size"

	vgName = "nova-volumes"
	runID  = "20261125T013000Z-ab12"
)

// lvsCmd is the command line of `lvs` for the named VGs (all when none).
func lvsCmd(vgs ...string) string {
	return strings.Join(append([]string{"lvs --reportformat json --units b --nosuffix -o", lvsFields}, vgs...), " ")
}

func vgsCmd(vgs ...string) string {
	return strings.Join(append([]string{"vgs --reportformat json --units b --nosuffix -o", vgsFields}, vgs...), " ")
}

type response struct {
	stdout []byte
	err    error
}

// fakeRunner answers scripted command lines and records every command run.
// Each command line has a queue of responses; the last one repeats.
type fakeRunner struct {
	t     *testing.T
	resp  map[string][]response
	calls []string
	// cancel is called after the command line cancelAfter ran.
	cancelAfter string
	cancel      context.CancelFunc
}

func newFake(t *testing.T) *fakeRunner {
	return &fakeRunner{t: t, resp: map[string][]response{}}
}

// on queues stdout (a testdata file name, or "" for no output) for cmd.
func (f *fakeRunner) on(cmd, file string) *fakeRunner {
	var out []byte
	if file != "" {
		out = testdata(f.t, file)
	}
	f.resp[cmd] = append(f.resp[cmd], response{stdout: out})
	return f
}

// fail queues a failure for cmd, with the stdout, stderr and exit code
// captured as testdata/NAME.{stdout,stderr,rc}.
func (f *fakeRunner) fail(cmd, name string) *fakeRunner {
	f.resp[cmd] = append(f.resp[cmd], response{stdout: testdata(f.t, name+".stdout"), err: exitError(f.t, cmd, name)})
	return f
}

func (f *fakeRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.calls = append(f.calls, line)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if line == f.cancelAfter {
		defer f.cancel()
	}
	q := f.resp[line]
	if len(q) == 0 {
		f.t.Errorf("unexpected command: %s", line)
		return nil, &sysexec.ExitError{Cmd: name, Args: args, Code: 127, Stderr: "not scripted"}
	}
	if len(q) > 1 {
		f.resp[line] = q[1:]
	}
	return q[0].stdout, q[0].err
}

// wantCalls checks the exact command lines run, in order.
func (f *fakeRunner) wantCalls(want ...string) {
	f.t.Helper()
	if !slices.Equal(f.calls, want) {
		f.t.Errorf("commands run:\n  %s\nwant:\n  %s", strings.Join(f.calls, "\n  "), strings.Join(want, "\n  "))
	}
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exitError(t *testing.T, cmd, name string) *sysexec.ExitError {
	t.Helper()
	code, err := strconv.Atoi(strings.TrimSpace(string(testdata(t, name+".rc"))))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(cmd)
	return &sysexec.ExitError{Cmd: f[0], Args: f[1:], Code: code, Stderr: string(testdata(t, name+".stderr"))}
}

func newSnapshotter(t *testing.T) (*lvm.Snapshotter, *fakeRunner) {
	f := newFake(t)
	return &lvm.Snapshotter{Runner: f}, f
}

func TestCaptureScriptFields(t *testing.T) {
	b, err := os.ReadFile("../../../test/uml/capture-lvm-json.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LVS_FIELDS=" + lvsFields + "\n", "VGS_FIELDS=" + vgsFields + "\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("capture-lvm-json.sh does not contain %q", want)
		}
	}
}
