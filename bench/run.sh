#!/usr/bin/env bash
# bench/run.sh — voltar against the standard tools, side by side, on one ext4
# image (see docs/performance.md). Run as root from anywhere; `make bench`
# calls it.
#
# Environment:
#   BENCH_DIR=/var/tmp/voltar-bench  work dir: corpus images (kept between runs),
#                                    outputs, store, voltar runtime/state
#   BENCH_ROUNDS=3       runs of each command; the table shows the fastest
#   BENCH_CACHE=cold     cold: sync + drop caches before every timed run;
#                        warm: read the image once and keep it cached
#   BENCH_ONLY=REGEX     only the commands whose name matches (e.g. 'zstd')
#   BENCH_SCALING=1      also the scaling runs (1k/100k files, 1/4 GiB); default 1
#   BENCH_SCALE=1        add the long scaling runs: 1M files and 16 GiB
#   VOLTAR=bin/voltar    the binary to measure (built by `make build`)
#
# Output: a table on stdout; every run's numbers in $BENCH_DIR/results/*.tsv.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
CACHE=${BENCH_CACHE:-cold}
ONLY=${BENCH_ONLY:-.}
SCALING=${BENCH_SCALING:-1}
SCALE=${BENCH_SCALE:-0}
VOLTAR=${VOLTAR:-$REPO/bin/voltar}

trap 'release_all; rm -rf "$BENCH_DIR/out" "$BENCH_DIR/restore" "$BENCH_DIR/restore.img" "$BENCH_DIR/store"' EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run as root (loop devices, mounts, drop_caches)"
need_tools
release_all # leftovers of a killed run
[ -x "$VOLTAR" ] || (cd "$REPO" && make build)
# voltar's archive stage alone (BenchmarkArchiveIndex), for the warm runs
# on a page-cached tree.
ARCHIVE_TEST=$BENCH_DIR/archive.test
if [ "$CACHE" = warm ] && [[ voltar-archive-hot =~ $ONLY ]]; then
	(cd "$REPO" && ${GO:-go} test -c -o "$ARCHIVE_TEST" ./internal/archive)
fi

corpora=(mixed)
((SCALING)) && corpora+=(files-1k files-100k size-1g size-4g)
((SCALE)) && corpora+=(files-1m size-16g)
"$REPO/bench/corpus.sh" "${corpora[@]}"

OUT=$BENCH_DIR/out MNT=$BENCH_DIR/mnt/src RESTORE=$BENCH_DIR/restore STORE=$BENCH_DIR/store
RESULTS=$BENCH_DIR/results
mkdir -p "$OUT" "$RESULTS" "$BENCH_DIR/run" "$BENCH_DIR/state"
CFG=$BENCH_DIR/voltar.yaml
cat >"$CFG" <<EOF
store: $STORE
host: bench
runtime_dir: $BENCH_DIR/run
state_dir: $BENCH_DIR/state
scratch_dir: $BENCH_DIR/scratch
compression: zstd
EOF
# The same with isolation: sandbox (the filesystem parsed in User-Mode Linux).
CFG_SB=$BENCH_DIR/voltar-sandbox.yaml
{
	cat "$CFG"
	echo "isolation: sandbox"
} >"$CFG_SB"
# The same with incremental backups (a full, then up to 7 increments).
CFG_INC=$BENCH_DIR/voltar-incremental.yaml
{
	cat "$CFG"
	printf 'incremental:\n  max_chain: 7\n'
} >"$CFG_INC"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TSV=$RESULTS/$STAMP.tsv
printf 'corpus\tname\tround\twall_s\tuser_s\tsys_s\tmaxrss_kib\tout_bytes\n' >"$TSV"

# timed NAME CORPUS ROUND PREP OUTPUT CMD: runs PREP (untimed), then CMD under
# /usr/bin/time, followed by sync so every tool pays for getting its output
# to disk (voltar fsyncs its objects). OUTPUT is a path whose size (du -sb)
# is the output size. Appends a line to $TSV.
timed() {
	local name=$1 corpus=$2 round=$3 prep=$4 output=$5 cmd=$6 tf
	tf=$(mktemp)
	eval "$prep"
	if [ "$CACHE" = cold ]; then drop_caches; else sync; fi
	if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" bash -c "$cmd && sync" >"$BENCH_DIR/last.log" 2>&1; then
		cat "$BENCH_DIR/last.log" >&2
		die "$name failed"
	fi
	local size=0
	[ -e "$output" ] && size=$(du -sbL "$output" | cut -f1)
	read -r wall user sys rss <"$tf"
	rm -f "$tf"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$corpus" "$name" "$round" "$wall" "$user" "$sys" "$rss" "$size" >>"$TSV"
	log "$corpus $name #$round: ${wall}s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')s cpu, $((rss / 1024)) MiB rss, $((size >> 20)) MiB out"
}

# The voltar archive of the last backup of image IMG (whole-disk fs).
voltar_archive() { ls "$STORE"/bench/image/"$1"/*/fs.tar.* 2>/dev/null | tail -1; }

# bench_corpus CORPUS ROUNDS FULL: the measurements on one image. FULL=1 runs
# every command; FULL=0 (scaling) only tar|zstd and voltar zstd.
bench_corpus() {
	local corpus=$1 rounds=$2 full=$3 img=$BENCH_DIR/corpus/$1.img r tree_bytes=0
	local vb="$VOLTAR --config $CFG --log-level error backup"
	local clean="rm -rf $OUT/* $STORE; mkdir -m 0700 $STORE; sync"
	for ((r = 1; r <= rounds; r++)); do
		# The standard tools read the tree mounted read-only from the image.
		attach_mount "$img" "$MNT" ro
		[ "$CACHE" = warm ] && [ "$r" = 1 ] && tar -C "$MNT" -cf - . | cat >/dev/null
		if [ "$r" = 1 ]; then
			tree_bytes=$(du -sb "$MNT" | cut -f1)
			printf '%s\t%s\t%s\t%s\n' "$corpus" "$tree_bytes" "$(find "$MNT" -type f | wc -l)" "$CACHE" >>"$TSV.src"
		fi
		# Warm, each standard tool reads a fresh mount of the cached image
		# (the page cache holds the image's blocks, not yet the files'
		# pages or inodes), which is what voltar's own run gets: it maps
		# and mounts the volume itself. A mount kept from the round before
		# would hand tar every file from the page cache where voltar reads
		# through the loop device. Cold, drop_caches does the same.
		local prep=$clean
		[ "$CACHE" = warm ] && prep="$clean; remount $img $MNT"
		if ((full)); then
			run tar-gz "$prep" "$OUT/a.tar.gz" "tar -C $MNT -czf $OUT/a.tar.gz ."
			run tar-pigz "$prep" "$OUT/a.tar.gz" "tar -C $MNT -I pigz -cf $OUT/a.tar.gz ."
		fi
		run tar-zstd "$prep" "$OUT/a.tar.zst" "tar -C $MNT -I 'zstd -T0 -3' -cf $OUT/a.tar.zst ."
		if [ "$CACHE" = warm ]; then
			# And both on the same tree with every file in the page cache
			# (the mount tar-zstd just read): tar | zstd against voltar's
			# archive stage (walk, tar, compression, both SHA-256s, the
			# file index; no mount, no store) run by its Go benchmark
			# (given the tree's size, so it does not walk it first; no
			# project ids, as backup decides for the corpus's ext4). Both
			# write nowhere (/dev/null; the benchmark's sink copies the
			# bytes).
			run tar-zstd-hot "" /dev/null "tar -C $MNT -cf - . | zstd -T0 -3 -q >/dev/null"
			run voltar-archive-hot "" /dev/null \
				"VOLTAR_BENCH_TREE=$MNT VOLTAR_BENCH_NO_PROJECT_IDS=1 VOLTAR_BENCH_TREE_BYTES=$tree_bytes $ARCHIVE_TEST -test.run '^\$' -test.bench 'ArchiveIndex/index=true\$' -test.benchtime 1x >/dev/null"
		fi
		unmount_detach "$MNT"
		# voltar maps and mounts the image itself. --offline reads it in
		# place (the pipeline alone); without it voltar first takes a
		# point-in-time copy (no reflinks on ext4), timed separately.
		run voltar-zstd "$clean" "$STORE" "$vb --offline $img"
		# The same in a sandbox: wall time and CPU against voltar-zstd;
		# the guest's RAM (256 MiB) is on top of the RSS shown.
		run voltar-zstd-sandbox "$clean" "$STORE" "$VOLTAR --config $CFG_SB --log-level error backup --offline $img"
		if ((full)); then
			# The same image as qcow2 (converted once, untimed), read
			# through qemu-storage-daemon's FUSE export.
			local qimg=${img%.img}.qcow2
			if [ ! -f "$qimg" ] || [ "$qimg" -ot "$img" ]; then
				qemu-img convert -f raw -O qcow2 "$img" "$qimg.tmp" && mv "$qimg.tmp" "$qimg"
			fi
			run voltar-qcow2 "$clean" "$STORE" "$vb --offline $qimg"
			run voltar-gzip "$clean" "$STORE" "$vb --offline --compress gzip $img"
			run voltar-zstd-snapshot "$clean" "$STORE" "$vb $img"
			run copy-only "rm -f $OUT/copy.img" "$OUT/copy.img" "cp --sparse=always $img $OUT/copy.img"
			# Restore the same archive both ways (voltar's fs.tar.zst).
			local keep="$clean; $vb --offline $img"
			bash -c "$keep" >/dev/null 2>&1
			local arch
			arch=$(voltar_archive "$(basename "$img")")
			local rclean="fresh_target"
			run restore-zstd-tar "$rclean" "$RESTORE" \
				"zstd -d -c $arch | tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -C $RESTORE"
			run restore-voltar "$rclean" "$RESTORE" \
				"$VOLTAR --config $CFG --log-level error restore image/$(basename "$img")/latest --to $RESTORE"
			drop_target
			# Browse the same backup: one ~1 MiB file (cat), the whole tree
			# (ls -R); what cat read from the store, and the index's size.
			local id=image/$(basename "$img")/latest file
			file=$(browse_file "$(dirname "$arch")")
			run cat-1mib "" "$OUT/cat.out" \
				"$VOLTAR --config $CFG --log-level debug cat $id '$file' >$OUT/cat.out 2>$OUT/cat.log"
			[[ cat-1mib =~ $ONLY ]] && browse_reads "$corpus" "$r" "$(dirname "$arch")" "$file"
			run ls-R "" "$OUT/ls.out" "$VOLTAR --config $CFG --log-level error ls -R $id >$OUT/ls.out"
			bench_incremental "$img"
		fi
	done
}

# bench_incremental IMG: incremental backups of a copy of IMG. inc-full is
# the chain's full backup; inc-unchanged a backup of the same tree;
# inc-1pct one after 1% of the files (every 100th, spread over the tree)
# were rewritten; their output is the new backup's folder. Then four more
# such increments make a 7-link chain (the full and six increments), and
# restore-chain restores its latest, restore-full-tree a full backup of
# the same tree, each to a fresh filesystem.
bench_incremental() {
	local img=$1 copy=$BENCH_DIR/inc.img vi="$VOLTAR --config $CFG_INC --log-level error backup --offline"
	local folders=$STORE/bench/image/inc.img
	local n any=0
	for n in inc-full inc-unchanged inc-1pct restore-chain restore-full-tree; do [[ $n =~ $ONLY ]] && any=1; done
	((any)) || return 0
	rm -rf "$STORE" && mkdir -m 0700 "$STORE"
	cp --sparse=always "$img" "$copy"
	step inc-full "" "$OUT/newest" "$vi $copy && ln -sfn \$(ls -d $folders/*/ | tail -1) $OUT/newest"
	step inc-unchanged "" "$OUT/newest" "$vi $copy && ln -sfn \$(ls -d $folders/*/ | tail -1) $OUT/newest"
	step inc-1pct "change_files $copy 0" "$OUT/newest" "$vi $copy && ln -sfn \$(ls -d $folders/*/ | tail -1) $OUT/newest"
	local k
	for k in 1 2 3 4; do
		change_files "$copy" "$k"
		bash -c "$vi $copy" >/dev/null
	done
	local chain full
	chain=image/inc.img/$(basename "$(ls -d $folders/*/ | tail -1)")
	bash -c "$VOLTAR --config $CFG --log-level error backup --offline --full $copy" >/dev/null
	full=image/inc.img/$(basename "$(ls -d $folders/*/ | tail -1)")
	step restore-chain fresh_target "$RESTORE" "$VOLTAR --config $CFG --log-level error restore $chain --to $RESTORE"
	step restore-full-tree fresh_target "$RESTORE" "$VOLTAR --config $CFG --log-level error restore $full --to $RESTORE"
	drop_target
	rm -f "$copy" "$OUT/newest"
	rm -rf "$STORE" && mkdir -m 0700 "$STORE"
}

# step NAME PREP OUTPUT CMD: run, or, when BENCH_ONLY leaves NAME out, the
# same untimed (the later steps build on it).
step() {
	if [[ $1 =~ $ONLY ]]; then
		timed "$1" "$corpus" "$r" "$2" "$3" "$4"
	else
		eval "$2"
		bash -c "$4" >/dev/null
	fi
}

# change_files IMG K: rewrites every 100th regular file of IMG's tree
# (offset K), keeping its size: 1% of the files, spread over the tree.
change_files() {
	local mnt=$BENCH_DIR/mnt/inc
	attach_mount "$1" "$mnt" rw
	find "$mnt" -type f -size +0 -printf '%P\n' | LC_ALL=C sort | awk -v k="$2" 'NR % 100 == k' |
		while read -r f; do printf 'v%s' "$2" | dd of="$mnt/$f" conv=notrunc status=none; done
	unmount_detach "$mnt"
}

# browse_file DIR: the path of the file closest to 1 MiB in the backup folder DIR
# (from its file index).
browse_file() {
	zstd -dc "$1"/fs.index.zst | sed -nE 's/^\{"path":"([^"]*)","type":"file","size":([0-9]+),.*/\2 \1/p' |
		awk '{ d = $1 - 1048576; if (d < 0) d = -d; if (best == "" || d < bd) { bd = d; best = substr($0, index($0, " ") + 1) } } END { print best }'
}

# browse_reads CORPUS ROUND DIR FILE: appends to $TSV.browse what the last
# voltar cat read from the store, the index's and the archive's sizes and
# the largest frame (a file straddles at most two).
browse_reads() {
	local reads bytes frame
	read -r reads bytes < <(sed -nE 's/.*read from the store.*requests=([0-9]+) bytes=([0-9]+).*/\1 \2/p' "$OUT/cat.log" | tail -1)
	frame=$(zstd -dc "$3"/fs.index.zst | sed -nE 's/.*"frame":\{"offset":[0-9]+,"size":([0-9]+),.*/\1/p' | sort -n | tail -1)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$4" "${reads:-0}" "${bytes:-0}" \
		"$(stat -c %s "$3"/fs.index.zst)" "$(stat -c %s "$3"/fs.tar.zst)" "${frame:-0}" >>"$TSV.browse"
}

# Restores go to a freshly made ext4 filesystem on a loop device, as onto a
# new volume: a directory on a long-used filesystem made the kernel's inode
# allocator (after rm -rf of the previous restore) most of the cost.
fresh_target() {
	drop_target
	truncate -s 4G "$BENCH_DIR/restore.img"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$BENCH_DIR/restore.img"
	attach_mount "$BENCH_DIR/restore.img" "$RESTORE" rw
}

drop_target() {
	if mountpoint -q "$RESTORE"; then unmount_detach "$RESTORE"; fi
	rm -rf "$BENCH_DIR/restore.img" "$RESTORE"
}

run() {
	local name=$1
	[[ $name =~ $ONLY ]] || return 0
	timed "$name" "$corpus" "$r" "$2" "$3" "$4"
}

bench_corpus mixed "$ROUNDS" 1
if ((SCALING)); then
	for c in "${corpora[@]:1}"; do
		bench_corpus "$c" 1 0
	done
fi

"$REPO/bench/table.sh" "$TSV" "$TSV.src" "$TSV.browse"
log "raw results: $TSV"
