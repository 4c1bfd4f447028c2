#!/bin/bash
# make deb: build voltar_<version>_amd64.deb with nfpm (pinned in go.mod's
# tool directive, run with `go tool nfpm`). Generated files are staged under
# bin/deb/: the binary, the manual pages (`voltar gen-docs`, from the cobra
# commands), the shell completions (`voltar completion`), the systemd
# service pointing at /usr/sbin/voltar, the cron example, the copyright file
# with the licences of every Go module compiled in, changelog.Debian.gz.
# Package layout and dependencies: packaging/nfpm.yaml.
#   VERSION=v1.2.3 scripts/build-deb.sh  ->  voltar_1.2.3-1_amd64.deb
# Without a tag the version is 0.0~git<commit date>.<commit>-1.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$epoch}
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
if [[ $VERSION =~ ^v?([0-9][0-9A-Za-z.+~]*)(-.*)?$ ]] && [[ $VERSION != "$commit"* ]]; then
	upstream=${BASH_REMATCH[1]}${BASH_REMATCH[2]:+~${BASH_REMATCH[2]#-}}
	upstream=${upstream//-/.}
else
	upstream="0.0~git$(date -u -d "@$epoch" +%Y%m%d).$commit"
	[[ $VERSION == *-dirty ]] && upstream+="+dirty"
fi
export DEB_VERSION="$upstream-1"

stage=bin/deb
rm -rf "$stage"
mkdir -p "$stage"/{man,completion,systemd,doc,examples/cron}
# cgo for the C zstd library compiled in (internal/codec: ~25% faster per
# core than Go's encoder); netgo and osusergo keep Go's own DNS resolver and
# user lookup, as a build without cgo has them, so libc is the only library
# the binary links; PIE, as Debian builds C programs (lintian
# hardening-no-pie).
CGO_ENABLED=1 $GO build -trimpath -buildmode=pie -tags netgo,osusergo -ldflags "-s -w -X main.version=$VERSION" -o "$stage/voltar" ./cmd/voltar

"$stage/voltar" gen-docs --man "$stage/man"
gzip -9n "$stage"/man/*.8
for sh in bash zsh fish; do
	"$stage/voltar" completion "$sh" > "$stage/completion/voltar.$sh"
done

# The contrib files document a manual install into /usr/local/sbin; the
# package's binary is /usr/sbin/voltar and its units are already installed.
sed -e 's#/usr/local/sbin/voltar#/usr/sbin/voltar#g' \
	-e 's#^Documentation=.*#& man:voltar-run(8)#' \
	-e '/^#   install -m 0644 contrib/d' \
	-e 's/^# voltar.s nightly job. Install:$/# voltar'\''s nightly job, installed by the voltar package. Enable it with/' \
	-e 's/^#   systemctl daemon-reload && systemctl enable --now voltar.timer$/#   systemctl enable --now voltar.timer/' \
	contrib/systemd/voltar.service > "$stage/systemd/voltar.service"
grep -q '^ExecStart=/usr/sbin/voltar run ' "$stage/systemd/voltar.service" ||
	{ echo "build-deb: ExecStart in contrib/systemd/voltar.service not rewritten" >&2; exit 1; }
sed -e 's#/usr/local/sbin/voltar#/usr/sbin/voltar#g' contrib/cron/voltar > "$stage/examples/cron/voltar"

# Debian changelog: one entry for this build, dated like its commit.
{
	echo "voltar ($DEB_VERSION) bookworm; urgency=medium"
	echo
	echo "  * Built from git commit $commit ($VERSION)."
	echo
	echo " -- voltar maintainers <maintainers@users.noreply.r-seed-4690be9d.example>  $(date -u -R -d "@$epoch")"
} > "$stage/doc/changelog.Debian"
gzip -9n "$stage/doc/changelog.Debian"

# copyright: voltar, then each Go module compiled into the binary with its
# licence text from the module cache.
{
	cat packaging/copyright.head
	modcache=$($GO env GOMODCACHE)
	$GO version -m "$stage/voltar" | awk '$1 == "dep" { print $2, $3 }' | while read -r mod ver; do
		esc=$(echo "$mod" | sed 's/[A-Z]/!\L&/g')
		dir="$modcache/$esc@$ver"
		lic=$(ls "$dir"/LICENSE* "$dir"/LICENCE* "$dir"/COPYING* "$dir"/UNLICENSE* 2>/dev/null | head -1 || true)
		# A module that bundles C sources ships their licence beside its own
		# (github.com/DataDog/zstd: ZSTD_LICENSE).
		extra=$(ls "$dir"/*_LICENSE 2>/dev/null || true)
		echo
		echo "----------------------------------------------------------------------"
		echo "$mod $ver"
		echo
		if [ -n "$lic" ]; then
			if grep -q 'Apache License' "$lic" && grep -q 'Version 2.0' "$lic"; then
				echo "Apache License 2.0: see /usr/share/common-licenses/Apache-2.0"
				sed -n '/^ *Copyright [0-9(]/p' "$lic" | grep -v '\[yyyy\]' || true
			elif grep -q 'Mozilla Public License' "$lic" && grep -q '2.0' "$lic"; then
				echo "Mozilla Public License 2.0: see /usr/share/common-licenses/MPL-2.0"
			else
				sed 's/^$/./; s/^/ /' "$lic"
			fi
		else
			echo "(no licence file found in the module)"
		fi
		for x in $extra; do
			echo
			echo "$(basename "$x"), the bundled C sources' licence:"
			echo
			sed 's/^$/./; s/^/ /' "$x"
		done
	done
} > "$stage/doc/copyright"

mkdir -p bin
$GO tool nfpm package --packager deb --config packaging/nfpm.yaml --target "voltar_${DEB_VERSION}_amd64.deb" >&2
echo "voltar_${DEB_VERSION}_amd64.deb"
