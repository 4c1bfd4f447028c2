#!/bin/bash
# go-test.sh PKG [TEST_BINARY_FLAGS...] — run a package's tests inside the
# UML guest: builds them with -tags uml on the host (the guest has no Go
# toolchain or cache to write to) and runs the binary via run.sh in the
# package's directory, as `go test` would.
#
#   test/uml/go-test.sh ./internal/volume/lvm -test.v -test.run UML
#
# run.sh's settings (UML_TIMEOUT, KEEP, ...) apply.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ $# -lt 1 ]; then
	echo "usage: $0 PKG [TEST_BINARY_FLAGS...]" >&2
	exit 2
fi
pkg=$1
shift

# Not under /tmp: the guest has its own /tmp.
bin=$(mktemp -d /var/tmp/voltar-uml-test.XXXXXX)
trap 'rm -rf "$bin"' EXIT
cd "$root"
go test -c -tags uml -o "$bin/pkg.test" "$pkg"
dir=$(go list -f '{{.Dir}}' "$pkg")
# The tests read testdata relative to their package. The guest mounts its own
# /tmp, so a checkout under /tmp (CI's clone may be) is invisible there: run
# in a copy of the tree under /var/tmp instead.
case "$root" in
/tmp/*)
	tar -C "$root" --exclude=./.git --exclude=./bin --exclude=./demo -cf - . | tar -C "$bin" -xf - --one-top-level=src
	cd "$bin/src/${dir#"$root"/}"
	;;
*) cd "$dir" ;;
esac
rc=0
"$here/run.sh" "$bin/pkg.test" "$@" || rc=$?
exit "$rc"
