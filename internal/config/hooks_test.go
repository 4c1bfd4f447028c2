package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"voltar/internal/config"
)

// A volume's own hooks replace the global ones hook by hook; an empty list
// turns a global hook off for that volume.
func TestHooksFor(t *testing.T) {
	c, err := config.Parse(strings.NewReader(`
hooks:
  pre_snapshot: [/usr/local/sbin/quiesce, --pause]
  post_snapshot: [/usr/local/sbin/quiesce, --resume]
  timeout: 20s
volume_hooks:
  image/db1.qcow2:
    pre_snapshot: [/bin/sh, -c, "flush db1"]
    timeout: 5s
  vg0/volume-2:
    pre_snapshot: []
    post_snapshot: []
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want config.Hooks
	}{
		{"vg0/volume-1", config.Hooks{PreSnapshot: []string{"/usr/local/sbin/quiesce", "--pause"}, PostSnapshot: []string{"/usr/local/sbin/quiesce", "--resume"}, Timeout: 20 * time.Second}},
		{"image/db1.qcow2", config.Hooks{PreSnapshot: []string{"/bin/sh", "-c", "flush db1"}, PostSnapshot: []string{"/usr/local/sbin/quiesce", "--resume"}, Timeout: 5 * time.Second}},
		{"vg0/volume-2", config.Hooks{PreSnapshot: []string{}, PostSnapshot: []string{}, Timeout: 20 * time.Second}},
	} {
		if got := c.HooksFor(tc.id); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("HooksFor(%s) = %+v, want %+v", tc.id, got, tc.want)
		}
	}
}

func TestHooksValidate(t *testing.T) {
	for _, bad := range []string{
		"hooks: {pre_snapshot: [\"\"]}",
		"hooks: {timeout: -1s}",
		"volume_hooks: {web1: {pre_snapshot: [x]}}",
	} {
		c, err := config.Parse(strings.NewReader(bad))
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
