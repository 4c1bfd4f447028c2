#!/bin/sh
# capture-lvm-json.sh — regenerate internal/volume/lvm/testdata from real LVM.
#
# On the host it boots the UML guest (run.sh) and runs itself there; in the
# guest (VOLTAR_UML=1) it builds the volume group states the lvm package's
# unit tests replay and saves the exact `lvs`/`vgs` JSON for each, plus the
# stderr and exit code of the failures the code has to recognise.
#
#   test/uml/capture-lvm-json.sh [OUTDIR]   (default internal/volume/lvm/testdata)
#
# The field lists must stay identical to the ones in internal/volume/lvm
# (a unit test checks that this file contains them).
set -eu

LVS_FIELDS=lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_tags,origin,pool_lv,data_percent,snap_percent,metadata_percent,lv_path,lv_active,segtype,lv_layout,lv_role,lv_snapshot_invalid,lv_health_status
VGS_FIELDS=vg_name,vg_size,vg_free,vg_extent_size

if [ "${VOLTAR_UML:-}" != 1 ]; then
	here=$(cd "$(dirname "$0")" && pwd)
	out=${1:-$here/../../internal/volume/lvm/testdata}
	mkdir -p "$out"
	UML_OUT=$(cd "$out" && pwd) UML_TIMEOUT=${UML_TIMEOUT:-300} exec "$here/run.sh" "$here/capture-lvm-json.sh"
fi

VG=${VOLTAR_UML_VG:-nova-volumes}
OUT=$VOLTAR_UML_OUT
RUN=20261125T013000Z-ab12

lvs_json() { # lvs_json NAME [ARGS...]: save `lvs` JSON as NAME.json
	name=$1
	shift
	lvs --reportformat json --units b --nosuffix -o "$LVS_FIELDS" "$@" >"$OUT/$name.json"
	echo "captured $name.json"
}

vgs_json() {
	name=$1
	shift
	vgs --reportformat json --units b --nosuffix -o "$VGS_FIELDS" "$@" >"$OUT/$name.json"
	echo "captured $name.json"
}

fails() { # fails NAME CMD...: save stdout, stderr and exit code of a failing command
	name=$1
	shift
	rc=0
	"$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" || rc=$?
	echo "$rc" >"$OUT/$name.rc"
	[ "$rc" != 0 ] || { echo "expected $* to fail" >&2; exit 1; }
	echo "captured $name.{stdout,stderr,rc} (exit $rc)"
}

write_mib() { # write_mib LV MIB [SEEK_MIB]: overwrite part of an LV with random data
	dd if=/dev/urandom of="/dev/$VG/$1" bs=1M count="$2" seek="${3:-0}" oflag=direct conv=notrunc status=none
}

lvc() { lvcreate -q -q --yes "$@" >/dev/null; }

# Plain volumes: two active, one inactive, one not named volume-*, and a
# user's own (non-voltar) thick snapshot.
lvc -L 64M -n volume-00000001 "$VG"
lvc -L 128M -n volume-00000002 "$VG"
lvc -L 64M -n volume-00000003 "$VG"
lvchange -an "$VG/volume-00000003"
lvc -L 32M -n scratch "$VG"
lvc -s -L 16M -n volume-00000002-snap "$VG/volume-00000002"
lvs_json lvs-plain "$VG"
vgs_json vgs-plain "$VG"

# A voltar thick snapshot: fresh, partly used, overflowed (invalid).
lvc -s -L 16M -n "volume-00000001-voltar-$RUN" --addtag voltar --addtag "voltar-run-$RUN" "$VG/volume-00000001"
lvs_json lvs-thick-fresh "$VG"
vgs_json vgs-thick "$VG"
write_mib volume-00000001 4
lvs_json lvs-thick-used "$VG"
write_mib volume-00000001 32 8
lvs_json lvs-thick-invalid "$VG"

# Thin: a pool (errors instead of queueing when full, so filling it is
# quick), a thin volume with 32 MiB written, then a voltar thin snapshot,
# which LVM creates with the activation-skip flag (inactive) until
# `lvchange -ay -K`.
lvc -L 256M -T "$VG/thinpool" --errorwhenfull y
lvc -V 1G -T "$VG/thinpool" -n volume-00000010
write_mib volume-00000010 32
lvs_json lvs-thin "$VG"
lvc -s -n "volume-00000010-voltar-$RUN" --addtag voltar --addtag "voltar-run-$RUN" "$VG/volume-00000010"
lvs_json lvs-thin-snap-inactive "$VG"
lvchange -q -q --yes -ay -K "$VG/volume-00000010-voltar-$RUN"
lvs_json lvs-thin-snap-active "$VG"
# Every LV in every VG: the leftovers sweep and the default List.
lvs_json lvs-all

# Failures: removing what is gone, a VG or LV that does not exist.
fails lvremove-gone lvremove -f "$VG/volume-00000099-voltar-$RUN"
fails lvs-no-vg lvs --reportformat json --units b --nosuffix -o "$LVS_FIELDS" no-such-vg
vgs_json vgs-all

# Thin pool nearly full: another thin volume takes most of the pool, so
# less is free than volume-00000010 has mapped.
lvc -V 1G -T "$VG/thinpool" -n volume-00000011
write_mib volume-00000011 200
lvs_json lvs-thin-pool-low "$VG"
# Full: with --errorwhenfull the write fails instead of blocking.
write_mib volume-00000011 64 200 2>/dev/null || true
lvs_json lvs-thin-pool-full "$VG"

# The VG nearly full: a thick snapshot no longer fits.
free=$(vgs --noheadings --units b --nosuffix -o vg_free "$VG" | tr -d ' ')
lvc -L "$((free - 8 * 1024 * 1024))b" -n filler "$VG"
vgs_json vgs-nearly-full "$VG"
lvs_json lvs-nearly-full "$VG"
# The command line Create runs for 100%ORIGIN of the 128 MiB volume-00000002.
fails lvcreate-no-space lvcreate --yes -s -L 138412032b -n "volume-00000002-voltar-$RUN" --addtag voltar --addtag "voltar-run-$RUN" "$VG/volume-00000002"

lvm version | sed -n 1p >"$OUT/lvm-version.txt"
echo "done"
