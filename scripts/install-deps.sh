#!/bin/sh
# Installs the Debian packages voltar needs, only when missing.
#   install-deps.sh runtime   what `voltar` and `make demo` use (user-mode-linux
#                             and kmod for isolation: sandbox)
#   install-deps.sh test      plus what the tests use (UML for real LVM, ...)
set -eu
runtime="e2fsprogs xfsprogs dosfstools btrfs-progs fdisk util-linux zstd tar coreutils lvm2 fuse3 user-mode-linux kmod passwd"
test="$runtime pigz gzip age acl attr mtools ntfs-3g cryptsetup-bin thin-provisioning-tools busybox-static keyutils lintian man-db prometheus extlinux qemu-system-x86 grub-pc-bin linux-image-amd64 cpio ovmf grub-efi-amd64-bin"
# ssh-keygen: signed manifests (signing.key_file) and their tests.
test="$test openssh-client"
# domains: (libvirt): libvirtd and virsh for the tests' guest, qemu-ga
# copied into the guest's initramfs (cmd/voltar/libvirt_test.go).
test="$test libvirt-daemon-system libvirt-clients qemu-guest-agent"
# gcc, libc6-dev: cgo, for the C zstd library compiled into voltar (make deb
# requires it; a plain go build without a C compiler falls back to Go's).
test="$test gcc libc6-dev"
case "${1:-runtime}" in
runtime) want=$runtime ;;
test) want="$test qemu-utils qemu-system-common" ;; # qcow2: qemu-img, qemu-storage-daemon
*) echo "usage: $0 runtime|test" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing Debian packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# lvm2's post-install tries to start services; nothing runs here, so ignore that.
apt-get install -y -qq --no-install-recommends $missing >/dev/null
