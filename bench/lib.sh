# Shared by bench/run.sh and bench/corpus.sh: the work dir, packages, and
# loop devices/mounts that are always released on exit.

BENCH_DIR=${BENCH_DIR:-/var/tmp/voltar-bench}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# need_tools installs the Debian packages the benchmark uses when missing.
need_tools() {
	local missing=() cmd pkg
	for pair in tar:tar gzip:gzip pigz:pigz zstd:zstd /usr/bin/time:time mkfs.ext4:e2fsprogs \
		losetup:mount mount:mount qemu-img:qemu-utils qemu-storage-daemon:qemu-system-common; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}


# attach_mount IMG DIR [ro|rw]: loop-attach IMG and mount its ext4 on DIR.
attach_mount() {
	local img=$1 dir=$2 mode=${3:-ro} loop
	mkdir -p "$dir"
	if [ "$mode" = ro ]; then
		loop=$(losetup --find --show --read-only "$img")
	else
		loop=$(losetup --find --show "$img")
	fi
	mount -t ext4 -o "$mode" "$loop" "$dir"
}

# unmount_detach DIR: undo attach_mount.
unmount_detach() {
	local dir=$1 loop
	loop=$(findmnt -n -o SOURCE --target "$dir" 2>/dev/null || true)
	umount "$dir"
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
}

# remount IMG DIR: a fresh read-only mount of IMG on DIR (its inodes and
# file pages gone with the old one, the image's own pages still cached).
remount() {
	if mountpoint -q "$2"; then unmount_detach "$2"; fi
	attach_mount "$1" "$2" ro
}

# release_all undoes every attach_mount, this run's or a killed earlier
# one's: mounts under BENCH_DIR and loop devices of files under it (never
# a loop number that another process may have reused since).
release_all() {
	local d l
	{ findmnt -rn -o TARGET | grep "^$BENCH_DIR/" || true; } | sort -r | while read -r d; do umount "$d" 2>/dev/null || umount -l "$d" || true; done
	losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v p="$BENCH_DIR/" 'index($2, p) == 1 {print $1}' |
		while read -r l; do losetup -d "$l" 2>/dev/null || true; done
	return 0
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
