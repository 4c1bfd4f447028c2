#!/bin/sh
# Starts libvirtd (and virtlogd, which its QEMU driver writes guest logs
# through) for the libvirt domain tests (cmd/voltar/libvirt_test.go), on its
# usual socket /var/run/libvirt/libvirt-sock (qemu:///system).
#   start-libvirtd.sh          start both, wait until `virsh -c qemu:///system` answers
#   start-libvirtd.sh stop     stop what this script started (by its PID files)
#   start-libvirtd.sh status   exit 0 when libvirtd answers
# Idempotent: when libvirtd answers already (a system one, or started
# earlier), start does nothing. No systemd here: both run under setsid.
# The packages come from scripts/install-deps.sh test (libvirt-daemon-system,
# libvirt-clients, qemu-system-x86, qemu-guest-agent for the guest's agent).
# Environment: LIBVIRTD_DIR  PID files and logs [/tmp/voltar-libvirtd]
set -eu
me=start-libvirtd
. "$(dirname "$0")/service.sh"
dir=${LIBVIRTD_DIR:-/tmp/voltar-libvirtd}

ready() { virsh -q -c qemu:///system version >/dev/null 2>&1; }

case "${1:-start}" in
status)
	ready
	exit
	;;
stop)
	rc=0
	stop_pid "$dir/libvirtd.pid" libvirtd 30 || rc=1
	stop_pid "$dir/virtlogd.pid" virtlogd 30 || rc=1
	exit $rc
	;;
start) ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac

if ! command -v libvirtd >/dev/null 2>&1 || ! command -v virsh >/dev/null 2>&1; then
	say "libvirtd or virsh is not installed (scripts/install-deps.sh test)"
	exit 1
fi
if ready; then
	exit 0
fi
mkdir -p "$dir"
if ! alive "$dir/virtlogd.pid"; then
	setsid virtlogd </dev/null >"$dir/virtlogd.log" 2>&1 &
	echo $! >"$dir/virtlogd.pid"
fi
if alive "$dir/libvirtd.pid"; then
	say "PID $(cat "$dir/libvirtd.pid") is alive but does not answer; see $dir/libvirtd.log"
	exit 1
fi
setsid libvirtd </dev/null >"$dir/libvirtd.log" 2>&1 &
echo $! >"$dir/libvirtd.pid"
wait_ready ready "$(cat "$dir/libvirtd.pid")" 30 libvirtd "$dir/libvirtd.log" || {
	rm -f "$dir/libvirtd.pid"
	exit 1
}
say "libvirtd PID $(cat "$dir/libvirtd.pid"): qemu:///system on /var/run/libvirt/libvirt-sock"
