#!/bin/sh
# guest-init.sh — PID 1 of the User-Mode Linux guest started by run.sh.
#
# The root file system is the host's / (hostfs, read-only), so this runs under
# the host's /bin/sh (dash) and uses host binaries. The kernel hands us W=<work
# dir> in the environment. We set up device-mapper and LVM, run $W/cmd, write
# its exit code to $W/rc and power off. PID 1 must never exit (that panics
# the kernel), so every path ends in poweroff; if even that fails, run.sh's
# timeout kills the guest.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

log=/run/voltar-uml-setup.log

poweroff_now() {
	sync
	busybox poweroff -f
	# Not reached; keep PID 1 alive until the host kills us.
	while :; do sleep 60; done
}

fail() {
	echo "guest-init: setup failed: $*"
	[ -f "$log" ] && cat "$log"
	poweroff_now
}

ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(ms)

[ -n "${W:-}" ] || fail "W not set on the kernel command line"

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t tmpfs -o mode=0755 tmpfs /run || fail "mount /run"
: >"$log"
mount -t tmpfs tmpfs /tmp >>"$log" 2>&1 || fail "mount /tmp"
mount -t tmpfs tmpfs /mnt >>"$log" 2>&1 || fail "mount /mnt"

# CONFIG_DEVTMPFS_MOUNT usually mounted it already, over the host's /dev.
if ! grep -q '^[^ ]* /dev devtmpfs' /proc/mounts; then
	if ! mount -t devtmpfs devtmpfs /dev >>"$log" 2>&1; then
		# No devtmpfs: a tmpfs /dev with the nodes LVM needs. LVM creates
		# the dm nodes itself because udev is off.
		mount -t tmpfs -o mode=0755 tmpfs /dev || fail "mount /dev"
		mknod -m 666 /dev/null c 1 3
		mknod -m 666 /dev/zero c 1 5
		mknod -m 666 /dev/urandom c 1 9
		mknod -m 600 /dev/console c 5 1
		mknod -m 660 /dev/ubda b 98 0
		mknod -m 660 /dev/loop-control c 10 237
	fi
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts >>"$log" 2>&1
mount -t tmpfs tmpfs /dev/shm >>"$log" 2>&1

mount -t hostfs -o "$W" hostfs "$W" >>"$log" 2>&1 || fail "mount hostfs $W"

# Module dependencies (dm-bufio, dm-persistent-data, ...) come via modules.dep.
# vfat mounts need its default codepage (cp437) and iocharset (utf8).
for m in dm-mod dm-snapshot dm-thin-pool loop vfat nls_cp437 nls_utf8 nls_iso8859-1; do
	modprobe -d "$W/modroot" "$m" >>"$log" 2>&1 || fail "modprobe $m"
done
if [ ! -e /dev/mapper/control ]; then
	mkdir -p /dev/mapper
	minor=$(awk '$2 == "device-mapper" { print $1 }' /proc/misc)
	mknod -m 600 /dev/mapper/control c 10 "$minor" || fail "mknod /dev/mapper/control"
fi

# LVM without udev, lvmetad, dmeventd or lvmpolld; all state on tmpfs, and
# only the UML disk is scanned (never LVs, loop devices or the host's disks).
LVM_SYSTEM_DIR=/run/lvm-etc
mkdir -p "$LVM_SYSTEM_DIR" /run/lvm /run/lock/lvm
cat >"$LVM_SYSTEM_DIR/lvm.conf" <<'EOF'
devices {
	dir = "/dev"
	scan = [ "/dev" ]
	filter = [ "a|^/dev/ubd|", "r|.*|" ]
	global_filter = [ "a|^/dev/ubd|", "r|.*|" ]
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	use_devicesfile = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	verify_udev_operations = 1
	monitoring = 0
}
global {
	locking_dir = "/run/lock/lvm"
	use_lvmpolld = 0
	event_activation = 0
	thin_check_executable = "/usr/sbin/thin_check"
}
backup {
	backup = 1
	backup_dir = "/run/lvm-etc/backup"
	archive = 0
}
EOF
export LVM_SYSTEM_DIR
export DM_DISABLE_UDEV=1
export LVM_SUPPRESS_FD_WARNINGS=1
export HOME=/tmp TMPDIR=/tmp
export VOLTAR_UML=1 VOLTAR_UML_OUT="$W/out"

disk=/dev/ubda
[ -b "$disk" ] || fail "no $disk"
vg=$(cat "$W/vg")
if [ -n "$vg" ]; then
	export VOLTAR_UML_VG="$vg"
	pvcreate -q -y -ff "$disk" >>"$log" 2>&1 || fail "pvcreate $disk"
	vgcreate -q "$vg" "$disk" >>"$log" 2>&1 || fail "vgcreate $vg"
fi

# Host environment passed on by run.sh (VOLTAR_* variables).
[ -f "$W/env" ] && . "$W/env"

# The console is a tty: do not turn \n into \r\n in the command's output.
stty -onlcr 2>/dev/null

[ "$(cat "$W/quiet")" = 1 ] || echo "guest-init: ready in $(($(ms) - t0)) ms (kernel $(uname -r), VG ${vg:-none} on $disk)"

cd "$(cat "$W/cwd")" 2>/dev/null || cd /
/bin/sh "$W/cmd" </dev/null
rc=$?
echo "$rc" >"$W/rc.tmp" && mv "$W/rc.tmp" "$W/rc"
cd /
umount "$W" 2>/dev/null
poweroff_now
