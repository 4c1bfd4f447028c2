package lvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"voltar/internal/sysexec"
)

// Report fields voltar asks lvs and vgs for. test/uml/capture-lvm-json.sh
// captures testdata with exactly these lists; a unit test keeps them in step.
const (
	lvsFields = "lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_tags,origin,pool_lv," +
		"data_percent,snap_percent,metadata_percent,lv_path,lv_active,segtype," +
		"lv_layout,lv_role,lv_snapshot_invalid,lv_health_status"
	vgsFields = "vg_name,vg_size,vg_free,vg_extent_size"
)

// lv is one row of `lvs --reportformat json --units b --nosuffix`. LVM
// reports every value as a string; empty means "not applicable".
type lv struct {
	Name            string `json:"lv_name"`
	VG              string `json:"vg_name"`
	UUID            string `json:"lv_uuid"`
	Size            string `json:"lv_size"`
	Attr            string `json:"lv_attr"`
	Tags            string `json:"lv_tags"`
	Origin          string `json:"origin"`
	Pool            string `json:"pool_lv"`
	DataPercent     string `json:"data_percent"`
	SnapPercent     string `json:"snap_percent"`
	MetadataPercent string `json:"metadata_percent"`
	Path            string `json:"lv_path"`
	Active          string `json:"lv_active"`
	Segtype         string `json:"segtype"`
	Layout          string `json:"lv_layout"`
	Role            string `json:"lv_role"`
	SnapshotInvalid string `json:"lv_snapshot_invalid"`
	HealthStatus    string `json:"lv_health_status"`
}

type vg struct {
	Name       string `json:"vg_name"`
	Size       string `json:"vg_size"`
	Free       string `json:"vg_free"`
	ExtentSize string `json:"vg_extent_size"`
}

func (l lv) id() string { return l.VG + "/" + l.Name }

func (l lv) size() int64 { return parseBytes(l.Size) }

func (l lv) active() bool { return l.Active == "active" }

func (l lv) hasTag(tag string) bool {
	return l.Tags != "" && slices.Contains(strings.Split(l.Tags, ","), tag)
}

func (l lv) hasRole(role string) bool {
	return slices.Contains(strings.Split(l.Role, ","), role)
}

// thin reports whether the LV is a thin volume (thin snapshots included).
func (l lv) thin() bool { return l.Segtype == "thin" }

// snapshot reports whether the LV is a snapshot of another LV, thick or thin.
func (l lv) snapshot() bool { return l.hasRole("snapshot") || l.attr(0) == 's' }

// pool reports whether the LV is a thin, cache or VDO pool: it holds other
// LVs' data and is never a volume itself.
func (l lv) pool() bool { return strings.HasSuffix(l.Segtype, "-pool") || l.attr(0) == 't' }

// attr returns character i of lv_attr, or '-' if there is none.
func (l lv) attr(i int) byte {
	if i < len(l.Attr) {
		return l.Attr[i]
	}
	return '-'
}

// invalid reports whether a thick snapshot has been dropped by the kernel
// because its COW space filled up: lv_attr state 'I' (or 'S', invalid and
// suspended), as `lvs` shows it after an overflow.
func (l lv) invalid() bool {
	st := l.attr(4)
	return st == 'I' || st == 'S' || l.SnapshotInvalid == "snapshot invalid"
}

// percent parses an LVM percentage ("12.50"); ok is false when it is empty.
func percent(s string) (float64, bool) {
	if s == "" {
		return 0, false
	}
	// LVM formats with the C locale's decimal point unless LC_NUMERIC says
	// otherwise; accept a comma too.
	f, err := strconv.ParseFloat(strings.Replace(s, ",", ".", 1), 64)
	if err != nil || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// parseBytes parses a size reported with --units b --nosuffix; empty is 0.
func parseBytes(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// lvReport is the JSON document lvs prints; vgs' has "vg" rows instead.
type lvReport struct {
	Report []struct {
		LV []lv `json:"lv"`
		VG []vg `json:"vg"`
	} `json:"report"`
}

// lvs lists the LVs of the named VGs (all VGs when none are named).
func (s *Snapshotter) lvs(ctx context.Context, vgs ...string) ([]lv, error) {
	args := append([]string{"--reportformat", "json", "--units", "b", "--nosuffix", "-o", lvsFields}, vgs...)
	rep, err := s.report(ctx, "lvs", args)
	if err != nil {
		return nil, err
	}
	var rows []lv
	for _, r := range rep.Report {
		rows = append(rows, r.LV...)
	}
	return rows, nil
}

// vgs lists the named VGs (all when none are named).
func (s *Snapshotter) vgs(ctx context.Context, names ...string) ([]vg, error) {
	args := append([]string{"--reportformat", "json", "--units", "b", "--nosuffix", "-o", vgsFields}, names...)
	rep, err := s.report(ctx, "vgs", args)
	if err != nil {
		return nil, err
	}
	var rows []vg
	for _, r := range rep.Report {
		rows = append(rows, r.VG...)
	}
	return rows, nil
}

func (s *Snapshotter) report(ctx context.Context, cmd string, args []string) (*lvReport, error) {
	out, err := s.Runner.Run(ctx, cmd, args...)
	if err != nil {
		return nil, err
	}
	var rep lvReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("%s: parse JSON report: %w", cmd, err)
	}
	return &rep, nil
}

// lvsInVG lists the LVs of one VG. A VG that does not exist is reported as
// ErrNotFound: lvs only says so on stderr, so a failure is checked against
// the list of all VGs rather than by parsing messages.
func (s *Snapshotter) lvsInVG(ctx context.Context, vgName string) ([]lv, error) {
	rows, err := s.lvs(ctx, vgName)
	if err == nil {
		return rows, nil
	}
	var ee *sysexec.ExitError
	if !errors.As(err, &ee) {
		return nil, err
	}
	all, verr := s.vgs(ctx)
	if verr != nil {
		return nil, err
	}
	names := make([]string, 0, len(all))
	for _, g := range all {
		if g.Name == vgName {
			return nil, err
		}
		names = append(names, g.Name)
	}
	have := "none"
	if len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	return nil, fmt.Errorf("volume group %q %w (volume groups here: %s)", vgName, ErrNotFound, have)
}

// find returns the LV named name in rows.
func find(rows []lv, name string) (lv, bool) {
	for _, r := range rows {
		if r.Name == name {
			return r, true
		}
	}
	return lv{}, false
}
