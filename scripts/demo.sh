#!/bin/bash
# make demo: build a sample disk image with an MBR table holding an ext4 and
# an xfs filesystem with files, back it up with voltar, verify it, restore it,
# and show the result. Everything lives in ./demo; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
# VOLTAR_BIN and VOLTAR_DEMO_DIR: another binary (the installed package's, for
# scripts/test-deb.sh) and another place for the demo's files.
demo=${VOLTAR_DEMO_DIR:-$top/demo}
voltar=${VOLTAR_BIN:-$top/bin/voltar}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it attaches loop devices and mounts)" >&2; exit 1; }

rm -rf "$demo"
mkdir -p "$demo/mnt" "$demo/store" "$demo/restore"
chmod 0700 "$demo/store"
loops=()
cleanup() {
	mountpoint -q "$demo/mnt" && umount "$demo/mnt"
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a 1 GiB sparse disk image with an MBR table: p1 ext4 (300 MiB), p2 xfs (500 MiB)"
img=$demo/disk.img
truncate -s 1G "$img"
sfdisk --quiet "$img" <<'TABLE'
label: dos
label-id: 0x766f6c74
start=2048, size=614400, type=83
start=618496, size=1024000, type=83
TABLE
sfdisk -l "$img" | sed 's/^/   /'

populate() { # offset size mkfs... -- files
	local off=$1 size=$2; shift 2
	local dev; dev=$(losetup --find --show --offset "$off" --sizelimit "$size" "$img")
	loops+=("$dev")
	"$@" "$dev" >/dev/null
	mount "$dev" "$demo/mnt"
}
populate $((2048*512)) $((614400*512)) mkfs.ext4 -q -L demo-root
mkdir -p "$demo/mnt/etc" "$demo/mnt/home/alice" "$demo/mnt/var/cache"
cp -a /usr/share/doc/tar /usr/share/doc/zstd "$demo/mnt/home/alice/" 2>/dev/null || true
echo "hello from the demo volume" > "$demo/mnt/home/alice/hello.txt"
ln "$demo/mnt/home/alice/hello.txt" "$demo/mnt/home/alice/hello-hardlink.txt"
ln -s hello.txt "$demo/mnt/home/alice/hello-symlink"
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' > "$demo/mnt/etc/passwd"
printf 'root:x:0:\nalice:x:1000:\n' > "$demo/mnt/etc/group"
chown -R 1000:1000 "$demo/mnt/home/alice"
truncate -s 200M "$demo/mnt/home/alice/sparse.bin"
echo "data in the middle" | dd of="$demo/mnt/home/alice/sparse.bin" bs=1M seek=100 conv=notrunc status=none
head -c 20M /dev/urandom > "$demo/mnt/var/cache/junk.bin"
umount "$demo/mnt"
populate $((618496*512)) $((1024000*512)) mkfs.xfs -q -L demo-data
mkdir -p "$demo/mnt/db"
seq 1 200000 > "$demo/mnt/db/numbers.txt"
cp -a /usr/share/common-licenses "$demo/mnt/" 2>/dev/null || true
umount "$demo/mnt"
for l in "${loops[@]}"; do losetup -d "$l"; done
loops=()
echo "   image: $(du -h --apparent-size "$img" | cut -f1) apparent, $(du -h "$img" | cut -f1) allocated"

cat > "$demo/voltar.yaml" <<YAML
store: $demo/store
host: demo
runtime_dir: $demo/run
state_dir: $demo/state
excludes: ["var/cache/**"]
YAML

step "2. voltar backup (snapshot = reflink or sparse copy; var/cache excluded)"
"$voltar" --config "$demo/voltar.yaml" backup "$img"

step "3. the store: plain files, restorable without voltar"
(cd "$demo/store" && find . -type f | sort | sed 's/^/   /')
dir=$(dirname "$(find "$demo/store" -name manifest.json | head -1)")
(cd "$dir" && sha256sum -c SHA256SUMS | sed 's/^/   /')

step "4. voltar list and verify (re-hash, decompress and read every archive)"
"$voltar" --config "$demo/voltar.yaml" list
"$voltar" --config "$demo/voltar.yaml" verify

step "5. restore by hand with standard tools: zstd -d | tar -x"
mkdir -p "$demo/restore/p1"
zstd -d -q < "$dir/p1.tar.zst" | tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -C "$demo/restore/p1"
cat "$demo/restore/p1/home/alice/hello.txt" | sed 's/^/   restored: /'
echo "   sparse.bin: $(du -h --apparent-size "$demo/restore/p1/home/alice/sparse.bin" | cut -f1) apparent, $(du -h "$demo/restore/p1/home/alice/sparse.bin" | cut -f1) on disk"
ls -ln "$demo/restore/p1/home/alice" | sed 's/^/   /'
test ! -e "$demo/restore/p1/var/cache/junk.bin" && echo "   var/cache/junk.bin was excluded, as configured"

step "6. voltar restore (checks every byte against SHA256SUMS)"
"$voltar" --config "$demo/voltar.yaml" restore image/disk.img/latest --partition p2 --to "$demo/restore/p2"
cmp "$demo/restore/p2/db/numbers.txt" <(seq 1 200000) && echo "   p2/db/numbers.txt restored identical"

step "7. browse the backup from its file index: ls, find, cat, restore --path"
"$voltar" --config "$demo/voltar.yaml" ls -l image/disk.img/latest p1/home/alice | sed 's/^/   /'
"$voltar" --config "$demo/voltar.yaml" find image/disk.img 'hello*' | sed 's/^/   /'
"$voltar" --config "$demo/voltar.yaml" cat image/disk.img/latest p1/home/alice/hello.txt | sed 's/^/   cat: /'
"$voltar" --config "$demo/voltar.yaml" restore image/disk.img/latest --path 'p2/db/*.txt' --to "$demo/restore/one" >/dev/null
cmp "$demo/restore/one/p2/db/numbers.txt" <(seq 1 200000) && echo "   restore --path brought back p2/db/numbers.txt alone"

step "8. the nightly job: voltar run backs up (an increment: only what changed), prunes (keep_last 1, which keeps the full it builds on) and reports"
cat >> "$demo/voltar.yaml" <<YAML
images:
  - path: $img
incremental:
  max_chain: 6
retention:
  keep_last: 1
report:
  json_file: $demo/last-run.json
YAML
"$voltar" --config "$demo/voltar.yaml" --log-level warn run
"$voltar" --config "$demo/voltar.yaml" list

step "done: nothing left attached"
# A loop device that another process (udev, a prober) still held open when
# voltar detached it is freed by the kernel a moment later (autoclear):
# wait up to 5 s before calling it left behind.
for _ in 1 2 3 4 5 6 7 8 9 10; do losetup -a | grep -qF "$demo" || break; sleep 0.5; done
losetup -a | grep -F "$demo" && { echo "demo: loop devices left behind!" >&2; exit 1; }
grep -F "$demo" /proc/self/mountinfo && { echo "demo: mounts left behind!" >&2; exit 1; }
find "$demo" -name '.voltar-clone-*' | grep . && { echo "demo: image clones left behind!" >&2; exit 1; }
echo "   no loop devices, no mounts, no clones left; backups are in $demo/store"
