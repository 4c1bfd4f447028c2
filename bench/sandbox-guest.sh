#!/usr/bin/env bash
# bench/sandbox-guest.sh IMG [KEY=VALUE...] — time the sandbox's guest from
# inside (bench/sandboxguest): boots User-Mode Linux with IMG (a whole-disk
# filesystem, e.g. $BENCH_DIR/corpus/mixed.img) as /dev/ubda over a
# throwaway copy-on-write file and prints the guest's "BENCH" lines and the
# host CPU time of all UML processes. KEY=VALUE settings go to the guest
# (see bench/sandboxguest/main.go), e.g. as the sandbox runs the guest:
#
#   bench/sandbox-guest.sh $BENCH_DIR/corpus/mixed.img MODE=serial PREFETCH=0 BATCH=1 PROCS=2
#   bench/sandbox-guest.sh $BENCH_DIR/corpus/mixed.img OPS=1
#   PROFILE=/tmp/guest.pprof bench/sandbox-guest.sh IMG MODE=discard PREFETCH=0 BATCH=1 PROCS=2 PROF=1
#   go tool pprof -top $BENCH_DIR/sandboxguest /tmp/guest.pprof
#
# Environment: BENCH_CACHE=cold (default: drop the host's caches first) or
# warm; PIN=N runs UML on host CPU N as the sandbox does (internal/sandbox/
# cpu.go), PIN= (empty) leaves it to the scheduler; PROFILE=FILE keeps what
# the guest sent on its serial line. Runs UML as root without the sandbox's
# launcher: it measures the guest, not the isolation. Run as root.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 1 ] || die "usage: $0 IMG [KEY=VALUE...]"
[ "$(id -u)" = 0 ] || die "run as root (drop_caches)"
img=$(realpath "$1")
shift
command -v linux.uml >/dev/null || die "needs linux.uml (apt-get install user-mode-linux)"
mkdir -p "$BENCH_DIR"
GUEST=$BENCH_DIR/sandboxguest
(cd "$REPO" && CGO_ENABLED=0 go build -o "$GUEST" ./bench/sandboxguest)
work=$(mktemp -d "$BENCH_DIR/guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
PIN=${PIN-$(($(nproc) - 1))}
pin=()
[ -n "$PIN" ] && pin=(taskset -c "$PIN")
if [ "${BENCH_CACHE:-cold}" = cold ]; then drop_caches; fi
/usr/bin/time -f 'host: %e s wall, %U s user, %S s system (all UML processes)' \
	"${pin[@]}" linux.uml mem=256M root=/dev/root rootfstype=hostfs rootflags=/ ro \
	"ubd0=$work/cow,$img" "init=$GUEST" "$@" "uml_dir=$work" umid=guest \
	con=null con0=null,fd:2 ssl=null ssl0=null,fd:3 quiet loglevel=3 \
	3>"${PROFILE:-/dev/null}" </dev/null 2>&1 | grep -a -E '^(BENCH|host:)' || true
