#!/bin/bash
# test-lvm.sh — voltar's tests against real LVM, in User-Mode Linux (the host
# kernel has no device-mapper). `make test-lvm` and `make test` run it.
#
#   1. test/uml/selftest.sh: the guest's LVM does what voltar relies on;
#   2. internal/volume/lvm's tests tagged uml (the snapshotter on real LVM),
#      and internal/backup's (a kill the instant after lvcreate);
#   3. test/lvm: voltar's scenarios (thick and thin backups of volumes in
#      use, volumes, preflight, overflow, kill -9, SIGTERM, two
#      installations backing up one LV), run with the
#      voltar binary.
#
# Each step boots its own guest (test/uml/run.sh). Exit status: 0 when all
# pass, 1 when any fails. Without UML or LVM it prints why and skips (exit
# 0), or fails under VOLTAR_TEST_REQUIRE_ALL=1.
#
# Environment:
#   VOLTAR_BIN=/abs/path   test this voltar binary instead of building one
#   UML_TIMEOUT=600        seconds per guest boot (test/uml/run.sh)
#   UML_QUIET=1, KEEP=1    as for test/uml/run.sh
#   TEST_RUN=REGEXP        only the test/lvm scenarios matching REGEXP
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

# The UML guest mounts its own /tmp, so a checkout under /tmp (CI's clone may
# be one) is invisible inside it: run from a copy under /var/tmp instead.
case "$root/" in
/tmp/*)
	copy=$(mktemp -d /var/tmp/voltar-src.XXXXXX) || exit 1
	trap 'rm -rf "$copy"' EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
	tar -C "$root" --exclude=./.git --exclude=./demo -cf - . | tar -C "$copy" -xf -
	echo "test-lvm: $root is under /tmp, which the guest cannot see; running from $copy" >&2
	VOLTAR_VERSION=$version "$copy/scripts/test-lvm.sh" "$@"
	exit $?
	;;
esac

# --- what is needed ------------------------------------------------------
missing=()
command -v linux.uml >/dev/null || missing+=("linux.uml (apt-get install user-mode-linux)")
ls /usr/lib/uml/modules/*/kernel >/dev/null 2>&1 || missing+=("UML kernel modules in /usr/lib/uml/modules (user-mode-linux)")
for tool in lvcreate:lvm2 thin_check:thin-provisioning-tools busybox:busybox-static modprobe:kmod go:golang; do
	command -v "${tool%%:*}" >/dev/null || missing+=("${tool%%:*} (${tool#*:})")
done
if [ "$(id -u)" != 0 ]; then
	missing+=("root (loop devices and mounts)")
fi
if [ ${#missing[@]} -gt 0 ]; then
	printf 'test-lvm: cannot run the LVM tests; missing:\n' >&2
	printf '  - %s\n' "${missing[@]}" >&2
	printf '  (scripts/install-deps.sh test installs the packages)\n' >&2
	if [ "${VOLTAR_TEST_REQUIRE_ALL:-}" = 1 ]; then
		echo "FAIL test-lvm: VOLTAR_TEST_REQUIRE_ALL=1 and UML/LVM are missing" >&2
		exit 1
	fi
	echo "SKIP test-lvm: UML/LVM missing (set VOLTAR_TEST_REQUIRE_ALL=1 to make this a failure)"
	exit 0
fi

# --- scratch space, cleaned up on every exit -----------------------------
# Under /var/tmp, not /tmp: the guest has its own /tmp, but sees the host's
# /var/tmp (read-only) through hostfs.
tmp=$(mktemp -d /var/tmp/voltar-test-lvm.XXXXXX) || exit 1
child=
cleanup() {
	if [ -n "$child" ]; then
		kill -TERM -- "-$child" 2>/dev/null
		wait "$child" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
# A step runs in its own process group (setsid), so a signal reaches
# go-test.sh and run.sh, which stop the guest and remove their work dirs.
on_signal() {
	echo "test-lvm: $1: stopping" >&2
	[ -n "$child" ] && kill "-$1" -- "-$child" 2>/dev/null
	[ -n "$child" ] && wait "$child" 2>/dev/null
	child=
	exit "$2"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

export UML_TIMEOUT=${UML_TIMEOUT:-600}
# The Go tests time out (with stack traces) before the guest is killed.
gotimeout=$((UML_TIMEOUT - 30))s

# --- the voltar binary ---------------------------------------------------
if [ -n "${VOLTAR_BIN:-}" ]; then
	case $VOLTAR_BIN in
	/*) ;;
	*) echo "test-lvm: VOLTAR_BIN must be an absolute path" >&2; exit 1 ;;
	esac
	[ -x "$VOLTAR_BIN" ] || { echo "test-lvm: VOLTAR_BIN=$VOLTAR_BIN is not executable" >&2; exit 1; }
else
	# What `make build` does (go build leaves an up-to-date bin/voltar
	# alone), then a private copy, so a rebuild during the run cannot
	# change the binary under the tests.
	version=${VOLTAR_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
	if ! go build -trimpath -ldflags "-s -w -X main.version=$version" -o bin/voltar ./cmd/voltar; then
		echo "FAIL test-lvm: go build ./cmd/voltar failed" >&2
		exit 1
	fi
	cp bin/voltar "$tmp/voltar" || exit 1
	VOLTAR_BIN=$tmp/voltar
fi
export VOLTAR_BIN

# --- the steps -----------------------------------------------------------
summary=()
failed=0

# step NAME CMD...: run CMD with its output on ours and in a log, and note
# the result for the summary.
step() {
	local name=$1 log="$tmp/step-${#summary[@]}.log" rc start secs
	shift
	echo "=== test-lvm: $name"
	start=$(date +%s%N)
	setsid "$@" > >(tee "$log") 2>&1 </dev/null &
	child=$!
	wait "$child"
	rc=$?
	child=
	wait # for tee
	secs=$((($(date +%s%N) - start) / 10000000))
	secs=$((secs / 100)).$(printf '%02d' $((secs % 100)))
	local passed failed_tests skipped why=""
	passed=$(grep -c '^--- PASS' "$log")
	skipped=$(grep -c '^--- SKIP' "$log")
	failed_tests=$(grep '^--- FAIL' "$log" | sed 's/^--- FAIL: \([^ ]*\).*/\1/' | tr '\n' ' ')
	case $rc in
	0) why="" ;;
	124) why=" (guest timed out after ${UML_TIMEOUT}s)" ;;
	125) why=" (the guest did not start; see the log above)" ;;
	*) why=" (exit $rc)" ;;
	esac
	if [ "$rc" = 0 ]; then
		line=$(printf 'ok    %-32s %7ss' "$name" "$secs")
	else
		line=$(printf 'FAIL  %-32s %7ss%s' "$name" "$secs" "$why")
		failed=1
	fi
	if [ "$passed$skipped" != 00 ] || [ -n "$failed_tests" ]; then
		line+="  $passed passed"
		[ "$skipped" != 0 ] && line+=", $skipped skipped"
		[ -n "$failed_tests" ] && line+=", failed: ${failed_tests% }"
	else
		n=$(grep -c '^FAIL ' "$log")
		[ "$n" != 0 ] && line+="  $n check(s) failed"
	fi
	summary+=("$line")
}

t0=$(date +%s)
step test/uml/selftest.sh test/uml/selftest.sh
step voltar/internal/volume/lvm test/uml/go-test.sh ./internal/volume/lvm -test.v -test.count=1 -test.timeout="$gotimeout"
step voltar/internal/backup test/uml/go-test.sh ./internal/backup -test.v -test.count=1 -test.timeout="$gotimeout" -test.run UML
run_args=()
[ -n "${TEST_RUN:-}" ] && run_args=(-test.run "$TEST_RUN")
step voltar/test/lvm test/uml/go-test.sh ./test/lvm -test.v -test.count=1 -test.timeout="$gotimeout" "${run_args[@]}"

echo
echo "=== test-lvm summary ($(($(date +%s) - t0))s, voltar $("$VOLTAR_BIN" version 2>/dev/null | head -n1))"
printf '%s\n' "${summary[@]}"
if [ "$failed" != 0 ]; then
	echo "FAIL test-lvm"
	exit 1
fi
echo "PASS test-lvm"
