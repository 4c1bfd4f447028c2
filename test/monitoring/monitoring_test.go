package monitoring_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"voltar/internal/testutil"
)

// root is the repository, seen from this package's directory.
const root = "../.."

var (
	rulesFile     = filepath.Join(root, "contrib/prometheus/voltar.rules.yml")
	dashboardFile = filepath.Join(root, "contrib/grafana/voltar.json")
)

// The labels node_exporter's scrape adds to every series of the textfile.
const (
	job      = "node"
	instance = "node1:9100"
)

// textfiles are the outputs of three real runs: ok backed up one good image,
// failed the same image and an empty one, whose backup fails, missing only
// an image whose file is gone (so the good one, with its backups, is no
// longer selected).
type textfiles struct {
	ok, failed, missing map[string]*family
}

// family is one metric of a textfile with its samples.
type family struct {
	name    string
	samples []sample
}

type sample struct {
	labels map[string]string
	value  float64
}

func TestMonitoring(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "promtool")
	tf := realRuns(t)

	t.Run("promtool check rules", func(t *testing.T) {
		testutil.Run(t, "promtool", "check", "rules", rulesFile)
	})
	t.Run("rules use written metrics", func(t *testing.T) {
		data, err := os.ReadFile(rulesFile)
		if err != nil {
			t.Fatal(err)
		}
		checkNames(t, rulesFile, metricNames(string(data)), tf)
	})
	t.Run("promtool test rules", func(t *testing.T) {
		testRules(t, tf)
	})
	t.Run("dashboard queries use written metrics", func(t *testing.T) {
		exprs := dashboardExprs(t)
		if len(exprs) == 0 {
			t.Fatalf("%s: no queries found", dashboardFile)
		}
		var names []string
		for _, e := range exprs {
			names = append(names, metricNames(e)...)
		}
		checkNames(t, dashboardFile, names, tf)
	})
}

// realRuns builds voltar (or takes VOLTAR_BIN) and runs it twice on small
// images, returning the Prometheus textfiles it wrote.
func realRuns(t *testing.T) textfiles {
	dir := t.TempDir()
	bin := os.Getenv("VOLTAR_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "voltar")
		gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gotool); err != nil {
			gotool = "go"
		}
		testutil.Run(t, gotool, "build", "-o", bin, "voltar/cmd/voltar")
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.img")
	empty := filepath.Join(dir, "empty.img")
	for _, im := range []string{good, empty} {
		if err := os.WriteFile(im, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(im, 32<<20); err != nil {
			t.Fatal(err)
		}
	}
	// A whole-disk ext4 filled from src, no mount needed; empty.img stays
	// zeros: "no partition table and no known filesystem", a failed volume.
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-d", src, good)
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}

	run := func(name string, wantExit int, images ...string) map[string]*family {
		t.Helper()
		prom := filepath.Join(dir, name+".prom")
		cfg := fmt.Sprintf("store: %s\nhost: node1\nruntime_dir: %s\nstate_dir: %s\nreport:\n  prometheus_textfile: %s\nimages:\n",
			store, filepath.Join(dir, "run"), filepath.Join(dir, "state"), prom)
		for _, im := range images {
			cfg += fmt.Sprintf("  - path: %s\n    offline: true\n", im)
		}
		cfgPath := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--config", cfgPath, "--log-level", "warn", "run").CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantExit {
			t.Fatalf("voltar run (%s): exit %d, want %d\n%s", name, code, wantExit, out)
		}
		return parseTextfile(t, prom)
	}
	return textfiles{
		ok:      run("ok", 0, good),
		failed:  run("failed", 1, good, empty),
		missing: run("missing", 1, filepath.Join(dir, "gone.img")),
	}
}

func parseTextfile(t *testing.T, path string) map[string]*family {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("voltar run wrote no textfile: %v", err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	out := map[string]*family{}
	for name, mf := range fams {
		fam := &family{name: name}
		for _, m := range mf.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetUntyped() != nil:
				s.value = m.GetUntyped().GetValue()
			default:
				t.Fatalf("%s: %s is not a gauge, counter or untyped", path, name)
			}
			fam.samples = append(fam.samples, s)
		}
		out[name] = fam
	}
	return out
}

var metricRE = regexp.MustCompile(`\bvoltar_[a-zA-Z0-9_]+`)

// metricNames are the voltar_* names in a PromQL expression (or a file of
// them). Every metric voltar writes starts with voltar_, and nothing else
// in the expressions does.
func metricNames(expr string) []string { return metricRE.FindAllString(expr, -1) }

// checkNames fails for every name no real textfile holds.
func checkNames(t *testing.T, what string, names []string, tf textfiles) {
	t.Helper()
	if len(names) == 0 {
		t.Fatalf("%s: no voltar_ metric names found", what)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if tf.ok[n] == nil && tf.failed[n] == nil && tf.missing[n] == nil {
			t.Errorf("%s uses %s, which voltar run did not write (it wrote %s)", what, n, strings.Join(written(tf), ", "))
		}
	}
}

func written(tf textfiles) []string {
	var out []string
	for _, m := range []map[string]*family{tf.ok, tf.failed, tf.missing} {
		for n := range m {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// dashboardExprs returns every "expr" and templating "query" string in the
// Grafana dashboard, wherever it is nested.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") && s != "" {
					out = append(out, s)
				}
				if q, ok := x.(map[string]any); ok && k == "query" {
					if s, ok := q["query"].(string); ok {
						out = append(out, s)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

// series turns a textfile into promtool input series: every sample with
// the scrape's job and instance labels, constant for steps samples.
// Timestamps are moved so that the run started at the test's time 0, and
// rounded to whole seconds, so that alert values are exact. override
// replaces a series' values (a promtool expanding notation).
func series(fams map[string]*family, steps int, override map[string]string) string {
	start := fams["voltar_run_start_timestamp_seconds"].samples[0].value
	var b strings.Builder
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, s := range fams[n].samples {
			labels := map[string]string{"job": job, "instance": instance}
			for k, v := range s.labels {
				labels[k] = v
			}
			keys := make([]string, 0, len(labels))
			for k := range labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var ls []string
			for _, k := range keys {
				ls = append(ls, fmt.Sprintf("%s=%q", k, labels[k]))
			}
			v := s.value
			if strings.HasSuffix(n, "_timestamp_seconds") {
				v = math.Round(v - start)
			}
			values := fmt.Sprintf("%s+0x%d", formatFloat(v), steps)
			if o, ok := override[n]; ok {
				values = o
			}
			fmt.Fprintf(&b, "      - series: '%s{%s}'\n        values: '%s'\n", n, strings.Join(ls, ","), values)
		}
	}
	return b.String()
}

func formatFloat(v float64) string { return fmt.Sprintf("%g", v) }

// testRules writes a promtool unit test whose input series come from the
// real textfiles, and runs it.
func testRules(t *testing.T, tf textfiles) {
	size := tf.ok["voltar_destination_size_bytes"]
	if size == nil || tf.ok["voltar_destination_available_bytes"] == nil {
		t.Fatalf("the run wrote no voltar_destination_size_bytes/available_bytes (a local store reports them)")
	}
	sz := size.samples[0].value
	volume := func(f map[string]*family, failed float64) string {
		for _, s := range f["voltar_volume_backup_failed"].samples {
			if s.value == failed {
				return s.labels["volume"]
			}
		}
		t.Fatalf("no volume with voltar_volume_backup_failed %v", failed)
		return ""
	}
	good, bad, gone := volume(tf.ok, 0), volume(tf.failed, 1), volume(tf.missing, 1)
	if gone != "image/gone.img" {
		t.Fatalf("the missing image failed as %q, want image/gone.img", gone)
	}
	if u := tf.missing["voltar_volume_unselected"]; u == nil || len(u.samples) != 1 || u.samples[0].labels["volume"] != good {
		t.Fatalf("voltar_volume_unselected of the missing run: %+v, want %s only", u, good)
	}
	half := fmt.Sprintf("%s+0x%d", formatFloat(sz/2), 400)
	// 30% free, falling by 0.25% of the size an hour (scraped every 5
	// minutes): 10% at 80 h.
	falling := fmt.Sprintf("%s-%sx1440", formatFloat(sz*0.30), formatFloat(sz*0.0025/12))
	const stale = "Check `voltar list %s` and the last run's report (journalctl -u voltar.service)."

	test := fmt.Sprintf(`# Generated by test/monitoring from real voltar run textfiles.
rule_files:
  - %[1]s
evaluation_interval: 1m
tests:
  - name: a good run, then no run for 27 h
    interval: 5m
    input_series:
%[2]s
    alert_rule_test:
      - {eval_time: 25h, alertname: VoltarVolumeBackupStale, exp_alerts: []}
      - {eval_time: 25h, alertname: VoltarRunMissing, exp_alerts: []}
      - {eval_time: 25h, alertname: VoltarRunFailed, exp_alerts: []}
      - {eval_time: 25h, alertname: VoltarVolumeNeverBackedUp, exp_alerts: []}
      - {eval_time: 25h, alertname: VoltarStoreAlmostFull, exp_alerts: []}
      - {eval_time: 25h, alertname: VoltarStoreFillingUp, exp_alerts: []}
      - eval_time: 27h
        alertname: VoltarVolumeBackupStale
        exp_alerts:
          - exp_labels: {severity: critical, job: %[3]s, instance: "%[4]s", volume: "%[5]s"}
            exp_annotations:
              summary: "voltar: no successful backup of %[5]s on %[4]s for 1d 3h 0m 0s"
              description: "%[6]s"
      - eval_time: 27h
        alertname: VoltarRunMissing
        exp_alerts:
          - exp_labels: {severity: critical, job: %[3]s, instance: "%[4]s"}
            exp_annotations:
              summary: "voltar: no run on %[4]s for 1d 3h 0m 0s"
              description: "Check `+"`systemctl list-timers voltar.timer`"+` (or the cron job) and `+"`systemctl status voltar.service`"+`."

  - name: a run with a failed volume
    interval: 5m
    input_series:
%[7]s
    alert_rule_test:
      - eval_time: 30m
        alertname: VoltarRunFailed
        exp_alerts:
          - exp_labels: {severity: warning, job: %[3]s, instance: "%[4]s"}
            exp_annotations:
              summary: "voltar: the last run on %[4]s failed"
              description: "See the run's report (mail, journalctl -u voltar.service, report.json_file); voltar_volume_backup_failed names the volumes whose backup failed, voltar_volume_prune_failed those whose new backup is stored but whose prune failed."
      - {eval_time: 30m, alertname: VoltarVolumeBackupStale, exp_alerts: []}
      - {eval_time: 25h, alertname: VoltarVolumeNeverBackedUp, exp_alerts: []}
      - eval_time: 26h30m
        alertname: VoltarVolumeNeverBackedUp
        exp_alerts:
          - exp_labels: {severity: critical, job: %[3]s, instance: "%[4]s", volume: "%[8]s"}
            exp_annotations:
              summary: "voltar: %[8]s on %[4]s has never been backed up successfully"
              description: "Its backup fails every night; see the run's report (journalctl -u voltar.service)."

  - name: a run with a missing image, and a volume no longer selected
    interval: 5m
    input_series:
%[10]s
    alert_rule_test:
      - eval_time: 30m
        alertname: VoltarRunFailed
        exp_alerts:
          - exp_labels: {severity: warning, job: %[3]s, instance: "%[4]s"}
            exp_annotations:
              summary: "voltar: the last run on %[4]s failed"
              description: "See the run's report (mail, journalctl -u voltar.service, report.json_file); voltar_volume_backup_failed names the volumes whose backup failed, voltar_volume_prune_failed those whose new backup is stored but whose prune failed."
      - eval_time: 30m
        alertname: VoltarVolumeUnselected
        exp_alerts:
          - exp_labels: {severity: warning, job: %[3]s, instance: "%[4]s", volume: "%[5]s"}
            exp_annotations:
              summary: "voltar: %[5]s on %[4]s has backups but is no longer backed up"
              description: "The last run did not select it (deleted, renamed or excluded; `+"`voltar volumes`"+` shows the selection). Select it again, or remove its backups once they are no longer needed."
      - {eval_time: 30m, alertname: VoltarVolumeBackupStale, exp_alerts: []}
      - eval_time: 26h30m
        alertname: VoltarVolumeNeverBackedUp
        exp_alerts:
          - exp_labels: {severity: critical, job: %[3]s, instance: "%[4]s", volume: "%[11]s"}
            exp_annotations:
              summary: "voltar: %[11]s on %[4]s has never been backed up successfully"
              description: "Its backup fails every night; see the run's report (journalctl -u voltar.service)."

  - name: the store fills up
    interval: 5m
    input_series:
%[9]s
    alert_rule_test:
      - {eval_time: 78h, alertname: VoltarStoreAlmostFull, exp_alerts: []}
      - eval_time: 82h
        alertname: VoltarStoreAlmostFull
        exp_alerts:
          - exp_labels: {severity: warning, job: %[3]s, instance: "%[4]s"}
            exp_annotations:
              summary: "voltar: the store on %[4]s has 9.5%% free"
              description: "Add space or tighten retention: `+"`voltar prune --dry-run`"+` shows what the policy would remove."
      - eval_time: 6h
        alertname: VoltarStoreFillingUp
        exp_alerts:
          - exp_labels: {severity: warning, job: %[3]s, instance: "%[4]s"}
            exp_annotations:
              summary: "voltar: the store on %[4]s fills up within 7 days at this rate"
              description: "Add space or tighten retention: `+"`voltar prune --dry-run`"+` shows what the policy would remove."
`,
		mustAbs(t, rulesFile),
		series(tf.ok, 330, map[string]string{"voltar_destination_available_bytes": half}),
		job, instance, good, fmt.Sprintf(stale, good),
		series(tf.failed, 330, map[string]string{"voltar_destination_available_bytes": half}),
		bad,
		series(tf.ok, 1440, map[string]string{"voltar_destination_available_bytes": falling}),
		series(tf.missing, 330, map[string]string{"voltar_destination_available_bytes": half}),
		gone,
	)
	path := filepath.Join(t.TempDir(), "voltar.rules.test.yml")
	if err := os.WriteFile(path, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "test", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n--- %s:\n%s", err, out, path, test)
	}
	t.Logf("promtool test rules:\n%s", out)
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
