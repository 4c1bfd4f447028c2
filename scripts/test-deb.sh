#!/bin/bash
# make test-deb: check the Debian package on this machine. lintian (no error
# or warning beyond the justified overrides), then dpkg -i, voltar version,
# voltar config check on the shipped /etc/voltar/voltar.yaml, man
# voltar-restore, the file modes, the demo (scripts/demo.sh) with the
# installed /usr/sbin/voltar, dpkg -r (the conffile stays) and dpkg -P
# (nothing of the package stays). The package is purged on every exit path,
# and /etc/voltar, /var/lib/voltar and /run/voltar from earlier voltar runs
# are moved aside meanwhile and put back, so the machine is left as it was
# found. 12-35 s.
#   scripts/test-deb.sh [voltar_*.deb]     (default: the newest in the top dir)
# Needs root and dpkg; lintian and man from scripts/install-deps.sh test.
# A missing part skips (exit 0) when run by hand and fails when
# VOLTAR_TEST_REQUIRE_ALL=1 (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

unavailable() {
	if [ "${VOLTAR_TEST_REQUIRE_ALL:-}" = 1 ]; then
		echo "test-deb: FAIL: VOLTAR_TEST_REQUIRE_ALL=1 but $*" >&2
		exit 1
	fi
	echo "test-deb: SKIP: $*" >&2
	exit 0
}
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb: ok: $* [$(($(date +%s) - ${start:-$(date +%s)})) s]"; }

[ "$(id -u)" = 0 ] || unavailable "it needs root (dpkg -i)"
for t in dpkg dpkg-deb lintian man; do
	command -v "$t" >/dev/null || unavailable "it needs $t (scripts/install-deps.sh test)"
done
deb=${1:-$(ls -t "$top"/voltar_*_amd64.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || fail "no voltar_*_amd64.deb: run make deb first"
deb=$(realpath "$deb")
if dpkg-query -W -f='${Status}' voltar 2>/dev/null | grep -qv "not-installed"; then
	fail "a voltar package is already installed here ($(dpkg-query -W -f='${Status}' voltar)); this test would replace and purge it"
fi

start=$(date +%s)
for p in /usr/sbin/voltar /usr/share/doc/voltar; do
	[ ! -e "$p" ] || fail "$p exists before the package is installed (a voltar installed by hand?); move it away first"
done
# A run holding the lock must not lose its directory under it.
if [ -e /run/voltar/voltar.lock ] && ! flock -n /run/voltar/voltar.lock true; then
	fail "a voltar run holds /run/voltar/voltar.lock; try again when it is done"
fi
work=$(mktemp -d /tmp/voltar-test-deb.XXXXXX)
saved=()
cleanup() {
	local rc=$?
	if dpkg-query -W -f='${Status}' voltar 2>/dev/null | grep -qv "not-installed"; then
		dpkg -P voltar >/dev/null 2>&1 || echo "test-deb: dpkg -P voltar failed in cleanup" >&2
	fi
	for p in "${saved[@]}"; do
		rm -rf "$p"
		mv "$work/saved$p" "$p" || { echo "test-deb: could not put $p back; it is in $work/saved$p" >&2; exit 1; }
	done
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# voltar's directories left by earlier runs (the default runtime_dir and
# state_dir) or a manual install are moved aside while the package is
# tested, and put back afterwards, so that the purge check sees only the
# package's own and the machine ends as it was.
for p in /etc/voltar /var/lib/voltar /run/voltar; do
	if [ -e "$p" ]; then
		mkdir -p "$work/saved$(dirname "$p")"
		mv "$p" "$work/saved$p"
		saved+=("$p")
	fi
done
# Every path in the package that is not on the machine yet.
dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's#^\./#/#; s#/$##' | grep -v '^/\?$' |
	while read -r p; do [ -e "$p" ] || [ -L "$p" ] || echo "$p"; done > "$work/new"
[ ${#saved[@]} = 0 ] || echo "test-deb: moved aside until the end: ${saved[*]}"

# 1. lintian: no error or warning but those packaging/lintian-overrides
# justifies (exit 1: an error; 2: lintian itself failed).
lrc=0
lintian --tag-display-limit 0 "$deb" > "$work/lintian" 2>&1 || lrc=$?
if grep -E '^[EW]: ' "$work/lintian" >&2 || [ $lrc != 0 ]; then
	cat "$work/lintian" >&2
	fail "lintian (exit $lrc) reported the errors or warnings above"
fi
ok "lintian: no errors or warnings ($(grep -c '^voltar: ' packaging/lintian-overrides) justified overrides in packaging/lintian-overrides)"

# 2. install (the path-includes undo a slim image's path-excludes of docs)
dpkg --path-include="/usr/share/man/man8/voltar*" --path-include="/usr/share/doc/voltar/*" -i "$deb" > "$work/dpkg-i" 2>&1 || { cat "$work/dpkg-i" >&2; fail "dpkg -i $deb"; }
dpkg -L voltar > "$work/files"
ok "dpkg -i: $(wc -l < "$work/files") paths"

out=$(/usr/sbin/voltar version) || fail "voltar version"
want=$(dpkg-deb -f "$deb" Version)
case $out in "voltar "*) ;; *) fail "voltar version printed: $out" ;; esac
ok "voltar version: $out (package $want)"

/usr/sbin/voltar config check > "$work/check" 2>&1 || { cat "$work/check" >&2; fail "voltar config check on the shipped /etc/voltar/voltar.yaml"; }
grep -q "^config /etc/voltar/voltar.yaml is valid" "$work/check" || { cat "$work/check" >&2; fail "config check did not read /etc/voltar/voltar.yaml"; }
ok "voltar config check: /etc/voltar/voltar.yaml is valid as shipped"

MANPAGER=cat MANWIDTH=80 man voltar-restore > "$work/man" 2>"$work/man.err" || { cat "$work/man.err" >&2; fail "man voltar-restore"; }
grep -q -- "--to-image" "$work/man" || fail "man voltar-restore does not describe --to-image"
for c in backup run list verify restore prune dump volumes config-check version; do
	[ -f /usr/share/man/man8/voltar-$c.8.gz ] || fail "no manual page voltar-$c(8)"
done
MANPAGER=cat man -w voltar >/dev/null || fail "man voltar"
ok "man voltar-restore: $(wc -l < "$work/man") lines; voltar(8) and a page per command"

mode() { stat -c %a "$1"; }
[ "$(mode /etc/voltar/voltar.yaml)" = 600 ] || fail "/etc/voltar/voltar.yaml mode $(mode /etc/voltar/voltar.yaml), want 600"
grep -qx /etc/voltar/voltar.yaml /var/lib/dpkg/info/voltar.conffiles || fail "/etc/voltar/voltar.yaml is not a conffile"
for d in /var/lib/voltar /var/lib/voltar/runs /var/lib/voltar/scratch; do
	[ "$(mode $d)" = 700 ] || fail "$d mode $(mode $d), want 700"
done
grep -qx 'ExecStart=/usr/sbin/voltar run --config /etc/voltar/voltar.yaml' /lib/systemd/system/voltar.service || fail "voltar.service does not run /usr/sbin/voltar"
[ -f /lib/systemd/system/voltar.timer ] || fail "no voltar.timer"
[ ! -e /etc/systemd/system/timers.target.wants/voltar.timer ] || fail "voltar.timer was enabled on install"
grep -q '^30 1 \* \* \* root /usr/sbin/voltar run' /usr/share/doc/voltar/examples/cron/voltar || fail "cron example does not run /usr/sbin/voltar"
bash -c 'source /usr/share/bash-completion/completions/voltar && complete -p voltar' >/dev/null || fail "bash completion does not load"
[ -f /usr/share/zsh/vendor-completions/_voltar ] && [ -f /usr/share/fish/vendor_completions.d/voltar.fish ] || fail "zsh or fish completion missing"
ok "modes (config 0600 conffile, state 0700), units not enabled, cron example, completions"

VOLTAR_BIN=/usr/sbin/voltar VOLTAR_DEMO_DIR="$work/demo" scripts/demo.sh > "$work/demo.log" 2>&1 || { tail -30 "$work/demo.log" >&2; fail "the demo with /usr/sbin/voltar"; }
grep -q "no loop devices, no mounts, no clones left" "$work/demo.log" || fail "the demo did not finish"
ok "demo (backup, list, verify, restore, run) with /usr/sbin/voltar"
rm -rf "$work/demo"

# 3. remove: the binary goes, the conffile stays (policy 10.7.3).
dpkg -r voltar > "$work/dpkg-r" 2>&1 || { cat "$work/dpkg-r" >&2; fail "dpkg -r voltar"; }
[ ! -e /usr/sbin/voltar ] || fail "/usr/sbin/voltar still there after dpkg -r"
[ -f /etc/voltar/voltar.yaml ] || fail "dpkg -r removed the conffile /etc/voltar/voltar.yaml"
dpkg-query -W -f='${Status}' voltar | grep -q "config-files" || fail "after dpkg -r: $(dpkg-query -W -f='${Status}' voltar)"
ok "dpkg -r: binary gone, conffile kept"

# 4. purge: nothing of the package stays. Paths that were here before the
# install (/usr/share/man/man8, /lib -> usr/lib, ...) are other packages'.
dpkg -P voltar > "$work/dpkg-p" 2>&1 || { cat "$work/dpkg-p" >&2; fail "dpkg -P voltar"; }
! dpkg-query -W -f='${Status}' voltar 2>/dev/null | grep -qv "not-installed" || fail "voltar still known to dpkg after purge"
left=()
while read -r p; do
	[ -e "$p" ] || [ -L "$p" ] && left+=("$p")
done < "$work/new"
for p in /etc/voltar /var/lib/voltar /run/voltar /usr/sbin/voltar /usr/share/doc/voltar; do
	[ ! -e "$p" ] || left+=("$p")
done
[ ${#left[@]} = 0 ] || fail "left after dpkg -P: ${left[*]}"
ok "dpkg -P: nothing left ($(($(date +%s) - start)) s)"
