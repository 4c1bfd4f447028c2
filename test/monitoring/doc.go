// Package monitoring tests what ships for Prometheus and Grafana
// (contrib/prometheus/voltar.rules.yml, contrib/grafana/voltar.json) against
// the textfile a real `voltar run` writes: the alert rules with `promtool
// test rules` on series made from that file, the dashboard's queries by the
// metric names in it. It needs root (the run mounts a loop device),
// mkfs.ext4 and promtool (scripts/install-deps.sh test).
package monitoring
