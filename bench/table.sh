#!/usr/bin/env bash
# bench/table.sh RESULTS.tsv [SOURCES.tsv [BROWSE.tsv]] — the table of
# bench/run.sh: for each corpus and command the fastest round, with ratios to
# `tar -czf` and to `tar -I 'zstd -T0 -3'` (wall time and output size), and
# the browse targets (what voltar cat read, the index's size).
set -euo pipefail
awk -F'\t' -v src="${2:-}" -v browse="${3:-}" '
BEGIN {
	# corpus bytes files [cache: cold or warm; older runs: cold]
	if (src != "") while ((getline line < src) > 0) { split(line, f, "\t"); sbytes[f[1]] = f[2]; sfiles[f[1]] = f[3]; cache[f[1]] = f[4] == "" ? "cold" : f[4] }
	# corpus round file reads bytes index_bytes archive_bytes max_frame
	if (browse != "") while ((getline line < browse) > 0) {
		split(line, f, "\t"); if (f[1] != "mixed") continue
		bfile = f[3]; breads = f[4]; bbytes = f[5]; bindex = f[6]; barch = f[7]; bframe = f[8]
	}
}
NR == 1 { next }
{
	k = $1 SUBSEP $2
	if (!(k in wall) || $4 + 0 < wall[k] + 0) { wall[k] = $4; cpu[k] = $5 + $6; out[k] = $8 }
	if ($7 + 0 > rss[k] + 0) rss[k] = $7
	rounds[k] = rounds[k] " " $4
	if (!(k in seen)) { seen[k] = 1; order[++n] = k }
	if (!($1 in cseen)) { cseen[$1] = 1; corder[++nc] = $1 }
}
END {
	for (c = 1; c <= nc; c++) {
		cp = corder[c]
		printf "\n## corpus %s", cp
		if (cp in sbytes) printf ": %.0f MiB in %d files", sbytes[cp] / 1048576, sfiles[cp]
		printf "\n\n| command | wall s | x tar-gz | x tar-zstd | CPU s | peak RSS MiB | output MiB | size x tar-gz | MB/s |\n"
		printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
		gz = cp SUBSEP "tar-gz"; zs = cp SUBSEP "tar-zstd"
		for (i = 1; i <= n; i++) {
			k = order[i]; split(k, p, SUBSEP); if (p[1] != cp) continue
			rg = (gz in wall && wall[gz] > 0) ? sprintf("%.2f", wall[k] / wall[gz]) : "-"
			rz = (zs in wall && wall[zs] > 0) ? sprintf("%.2f", wall[k] / wall[zs]) : "-"
			sg = (gz in out && out[gz] > 0 && p[2] !~ /restore|copy/) ? sprintf("%.3f", out[k] / out[gz]) : "-"
			mbs = (cp in sbytes && wall[k] > 0) ? sprintf("%.0f", sbytes[cp] / 1e6 / wall[k]) : "-"
			printf "| %s | %.2f | %s | %s | %.2f | %.0f | %.1f | %s | %s |\n", p[2], wall[k], rg, rz, cpu[k], rss[k] / 1024, out[k] / 1048576, sg, mbs
			# In a sandbox run the largest process is UML (its RSS is
			# mostly the guest RAM file): its own target below.
			if (p[2] ~ /^voltar/ && p[2] !~ /sandbox/ && rss[k] > maxrss) maxrss = rss[k]
		}
	}
	m = "mixed" SUBSEP
	printf "\n## targets (corpus mixed; peak RSS over all corpora)\n\n"
	target("voltar zstd wall / tar -czf wall", m "voltar-zstd", m "tar-gz", 0.5, "wall")
	target("voltar zstd size / tar -czf size", m "voltar-zstd", m "tar-gz", 1.0, "out")
	target("voltar zstd wall / tar -I zstd wall", m "voltar-zstd", m "tar-zstd", 1.1, "wall")
	# Issue 13: the backup no slower than tar | zstd -T0 -3, with a cold
	# page cache and with a warm one (BENCH_CACHE=warm).
	target("voltar zstd wall / tar -I zstd wall, " ("mixed" in cache ? cache["mixed"] : "cold") " cache", m "voltar-zstd", m "tar-zstd", 1.0, "wall")
	# ... and on one tree whose files are all in the page cache (warm
	# runs): the archive stage against tar | zstd reading the same mount.
	target("voltar archive stage wall / tar | zstd wall, same page-cached tree", m "voltar-archive-hot", m "tar-zstd-hot", 1.0, "wall")
	target("voltar gzip wall / tar -I pigz wall", m "voltar-gzip", m "tar-pigz", 1.1, "wall")
	target("voltar qcow2 wall / voltar raw wall", m "voltar-qcow2", m "voltar-zstd", 1.3, "wall")
	target("voltar restore wall / zstd -d | tar -x wall", m "restore-voltar", m "restore-zstd-tar", 1.2, "wall")
	target("voltar zstd in a sandbox wall / kernel mode wall", m "voltar-zstd-sandbox", m "voltar-zstd", 1.5, "wall")
	if (maxrss > 0) printf "- voltar peak RSS: %.0f MiB (target < 256): %s\n", maxrss / 1024, maxrss / 1024 < 256 ? "met" : "MISSED"
	target("voltar cat of a 1 MiB file wall / voltar restore wall", m "cat-1mib", m "restore-voltar", 0.02, "wall")
	target("incremental backup of an unchanged tree wall / full backup wall", m "inc-unchanged", m "inc-full", 0.10, "wall")
	target("incremental backup of an unchanged tree size / full backup size", m "inc-unchanged", m "inc-full", 0.01, "out")
	target("incremental backup after a 1% change wall / full backup wall", m "inc-1pct", m "inc-full", 0.15, "wall")
	target("incremental backup after a 1% change size / full backup size", m "inc-1pct", m "inc-full", 0.03, "out")
	target("restore of the latest of a 7-link chain wall / restore of a full of the same tree wall", m "restore-chain", m "restore-full-tree", 1.2, "wall")
	if ((m "ls-R") in wall) printf "- voltar ls -R of the whole tree: %.2f s (target <= 1): %s\n", wall[m "ls-R"], wall[m "ls-R"] <= 1 ? "met" : "MISSED"
	if (barch > 0) {
		printf "- index size / archive size: %.4f (%d of %d bytes; target <= 0.03): %s\n", bindex / barch, bindex, barch, bindex / barch <= 0.03 ? "met" : "MISSED"
		printf "- voltar cat %s read %d bytes in %d requests; index + 2 frames = %d (target: at most that): %s\n", bfile, bbytes, breads, bindex + 2 * bframe, bbytes <= bindex + 2 * bframe ? "met" : "MISSED"
	}
}
function target(what, a, b, limit, col,   x, med, ra) {
	if (col == "wall") { if (!(a in wall) || !(b in wall) || wall[b] == 0) return; x = wall[a] / wall[b] }
	else { if (!(a in out) || !(b in out) || out[b] == 0) return; x = out[a] / out[b] }
	# Best of the rounds decides; with several rounds the ratio of the
	# medians is shown too (one lucky round of either side moves the best).
	med = ""
	if (col == "wall" && split(rounds[a], ra, " ") > 2 && median(rounds[b]) > 0) med = sprintf("; medians %.3f", median(rounds[a]) / median(rounds[b]))
	printf "- %s: %.3f (target <= %s%s): %s\n", what, x, limit, med, x <= limit ? "met" : "MISSED"
}
# median of a list of numbers separated by spaces
function median(list,   v, n, i, j, t) {
	n = split(list, v, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}' "$1"
