#!/bin/bash
# run.sh GUEST_CMD... — run a command as root inside a User-Mode Linux guest
# that has device-mapper, a 4 GiB disk /dev/ubda and on it the volume group
# nova-volumes. The host kernel has no device-mapper, so this is how voltar
# tests real LVM. Prints the guest's console and exits with the command's
# exit code (UML itself always exits 0).
#
# The guest sees the host's / read-only (hostfs), so host binaries, scripts
# and `go test -c` output run from their host paths. The work dir $W is
# mounted writable in the guest at the same path; $W/out is a good place for
# files the host should see afterwards (see UML_OUT). The guest has its own
# tmpfs /tmp, so host files under /tmp are not visible there.
#
# Environment:
#   UML_TIMEOUT=300     seconds before the guest is killed (exit 124)
#   UML_MEM=768M        guest memory
#   UML_DISK_SIZE=4G    sparse disk image size (the PV)
#   UML_VG=nova-volumes volume group to create; empty = leave the disk blank
#   UML_OUT=DIR         copy what the guest wrote to $VOLTAR_UML_OUT ($W/out) into DIR
#   KEEP=1              keep the work dir (its path is printed on stderr)
#   UML_QUIET=1         print only the command's output (no kernel or setup messages)
set -u

here=$(cd "$(dirname "$0")" && pwd)
timeout_s=${UML_TIMEOUT:-300}
mem=${UML_MEM:-768M}
disk_size=${UML_DISK_SIZE:-4G}
vg=${UML_VG-nova-volumes}

if [ $# -eq 0 ]; then
	echo "usage: $0 GUEST_CMD [ARG...]" >&2
	exit 2
fi
if ! command -v linux.uml >/dev/null; then
	echo "run.sh: linux.uml not found; apt-get install user-mode-linux" >&2
	exit 2
fi
kver=$(ls /usr/lib/uml/modules 2>/dev/null | head -n1)
if [ -z "$kver" ]; then
	echo "run.sh: no UML modules in /usr/lib/uml/modules" >&2
	exit 2
fi

W=$(mktemp -d /var/tmp/voltar-uml.XXXXXX) || exit 2
uml_pid=

# stop_guest: SIGTERM makes UML kill its helper processes and exit cleanly;
# SIGKILL to the process group is the fallback (it leaves zombies for init).
stop_guest() {
	[ -n "$uml_pid" ] || return 0
	kill -TERM "$uml_pid" 2>/dev/null
	for _ in $(seq 30); do
		kill -0 "$uml_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$uml_pid" 2>/dev/null
	wait "$uml_pid" 2>/dev/null
	uml_pid=
}

cleanup() {
	stop_guest
	if [ -n "${UML_OUT:-}" ] && [ -d "$W/out" ]; then
		mkdir -p "$UML_OUT" && cp -R "$W/out/." "$UML_OUT/"
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "run.sh: kept work dir $W" >&2
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$W/modroot/lib" "$W/out"
ln -s /usr/lib/uml/modules "$W/modroot/lib/modules"
truncate -s "$disk_size" "$W/disk.img"

# shquote ARG: ARG single-quoted for a POSIX shell (the guest runs dash).
shquote() {
	local q="'\\''"
	printf "'%s'" "${1//\'/$q}"
}

# The command goes to the guest as a shell script, every argument quoted.
{
	printf 'exec'
	for a in "$@"; do
		printf ' %s' "$(shquote "$a")"
	done
	printf '\n'
} >"$W/cmd"
# VOLTAR_* settings (VOLTAR_TEST_REQUIRE_ALL, ...) follow the command.
while IFS= read -r name; do
	printf 'export %s=%s\n' "$name" "$(shquote "${!name}")"
done < <(compgen -e | grep '^VOLTAR_') >"$W/env"
printf '%s\n' "$PWD" >"$W/cwd"
printf '%s\n' "$vg" >"$W/vg"
printf '%s\n' "${UML_QUIET:-0}" >"$W/quiet"

# UML keeps guest memory in a file under TMPDIR; /dev/shm is RAM-backed.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
	export TMPDIR=/dev/shm
fi

quiet_args=()
[ "${UML_QUIET:-0}" = 1 ] && quiet_args=(loglevel=0)

start=$(date +%s%N)
# setsid: own process group, so a timeout kills UML and all its helpers.
# Kernel parameters with '=' that the kernel does not know become init's
# environment (W=...).
setsid linux.uml mem="$mem" root=/dev/root rootfstype=hostfs rootflags=/ ro \
	ubd0="$W/disk.img" init="$here/guest-init.sh" W="$W" \
	con=null con0=null,fd:1 quiet zswap.enabled=0 pty.legacy_count=0 "${quiet_args[@]}" \
	</dev/null 2>&1 &
uml_pid=$!

deadline=$(($(date +%s) + timeout_s))
while kill -0 "$uml_pid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "run.sh: guest still running after ${timeout_s}s; killed" >&2
		exit 124
	fi
	sleep 0.2
done
wait "$uml_pid" 2>/dev/null
# UML has stopped its helpers; this only catches a straggler.
kill -KILL -- "-$uml_pid" 2>/dev/null
uml_pid=

ms=$((($(date +%s%N) - start) / 1000000))
elapsed=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
if [ ! -s "$W/rc" ]; then
	echo "run.sh: guest wrote no exit code (boot or setup failed; see output above)" >&2
	exit 125
fi
rc=$(cat "$W/rc")
echo "run.sh: guest command exited $rc after ${elapsed}s" >&2
exit "$rc"
