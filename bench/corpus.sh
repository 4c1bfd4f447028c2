#!/usr/bin/env bash
# bench/corpus.sh NAME... — build benchmark disk images (ext4, whole-disk, no
# partition table) under $BENCH_DIR/corpus/NAME.img, unless already built.
#
#   mixed       4 GiB image, ~1.6 GiB of data: Go source tree, generated text,
#               ELF binaries from /usr, random "media", .gz logs, 3 large files,
#               100k small files, symlinks and hard links
#   files-1k    1000 small files          files-100k   100,000 small files
#   files-1m    1,000,000 small files (takes several minutes to create)
#   size-1g / size-4g / size-16g   images of 1/4/16 GiB, half filled with
#               mixed-content files of 1..64 MiB (the rest stays sparse)
#
# Content comes from fixed seeds (bench/corpusgen); an image is rebuilt when
# missing or when corpusgen changed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap release_all EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run as root (loop devices, mounts)"
need_tools
mkdir -p "$BENCH_DIR/corpus"
GEN=$BENCH_DIR/corpusgen
(cd "$REPO" && go build -o "$GEN.new" ./bench/corpusgen) && mv "$GEN.new" "$GEN"
# Bump CORPUS_VERSION when the mkfs options below change.
CORPUS_VERSION=1
STAMP=$CORPUS_VERSION-$(sha256sum "$REPO/bench/corpusgen/main.go" | cut -c1-16)

build() {
	local name=$1 size inodes args
	local img=$BENCH_DIR/corpus/$name.img
	if [ -f "$img" ] && [ "$(cat "$img.stamp" 2>/dev/null)" = "$STAMP" ]; then
		return 0
	fi
	case $name in
	mixed) size=4G inodes=400000 args="mixed" ;;
	files-1k) size=256M inodes=16384 args="small 1000" ;;
	files-100k) size=2G inodes=200000 args="small 100000" ;;
	files-1m) size=12G inodes=1100000 args="small 1000000" ;;
	size-1g) size=1G inodes=65536 args="fill $((512 << 20))" ;;
	size-4g) size=4G inodes=65536 args="fill $((2 << 30))" ;;
	size-16g) size=16G inodes=131072 args="fill $((8 << 30))" ;;
	*) die "unknown corpus $name" ;;
	esac
	log "building corpus $name ($size image)"
	rm -f "$img" "$img.stamp"
	truncate -s "$size" "$img.tmp"
	# Fixed UUID and hash seed, no lazy init, so the image is the same each time.
	mkfs.ext4 -q -F -N "$inodes" -U 6f6c7461-7200-4000-8000-0000000000b1 \
		-E lazy_itable_init=0,lazy_journal_init=0,hash_seed=6f6c7461-7200-4000-8000-0000000000b2,root_owner=0:0 \
		-L "bench-$name" "$img.tmp"
	local mnt=$BENCH_DIR/mnt/build-$name
	attach_mount "$img.tmp" "$mnt" rw
	local kind=${args%% *} rest=${args#* }
	[ "$kind" = "$args" ] && rest=
	# shellcheck disable=SC2086
	"$GEN" "$kind" "$mnt" $rest
	sync
	log "corpus $name: $(df -h --output=used "$mnt" | tail -1 | tr -d ' ') used, $(df --output=iused "$mnt" | tail -1 | tr -d ' ') inodes"
	unmount_detach "$mnt"
	rmdir "$mnt"
	mv "$img.tmp" "$img"
	echo "$STAMP" >"$img.stamp"
}

for n in "$@"; do build "$n"; done
