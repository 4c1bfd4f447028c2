#!/bin/sh
# selftest.sh — check that the UML guest does the LVM voltar relies on.
#
#   test/uml/selftest.sh        (on the host; boots the guest via run.sh)
#
# Thick and thin snapshots, activation of a thin snapshot with -K, the size
# LVM gives 100%ORIGIN (which lvm.Policy reproduces), and that an overflowing
# thick snapshot turns invalid in the JSON report.
set -eu

if [ "${VOLTAR_UML:-}" != 1 ]; then
	here=$(cd "$(dirname "$0")" && pwd)
	exec "$here/run.sh" "$here/selftest.sh"
fi

VG=$VOLTAR_UML_VG
fails=0
check() { # check DESCRIPTION GOT WANT
	if [ "$2" = "$3" ]; then
		echo "ok   $1: $2"
	else
		echo "FAIL $1: got '$2', want '$3'"
		fails=$((fails + 1))
	fi
}
field() { # field FIELD VG/LV
	lvs --noheadings --units b --nosuffix -o "$1" "$2" | tr -d ' '
}
t0=$(date +%s%N)
ms() { echo "$((($(date +%s%N) - t0) / 1000000)) ms"; }

lvcreate -q -q --yes -L 64M -n volume-00000001 "$VG"
check "linear LV" "$(field lv_attr "$VG/volume-00000001")" "-wi-a-----"
lvcreate -q -q --yes -L 1G -n volume-00000002 "$VG"

t0=$(date +%s%N)
lvcreate -q -q --yes -s -l 100%ORIGIN -n full1 "$VG/volume-00000001"
echo "     (thick snapshot created in $(ms))"
check "100%ORIGIN of 64 MiB" "$(field lv_size "$VG/full1")" "$((68 << 20))"
lvcreate -q -q --yes -s -l 100%ORIGIN -n full2 "$VG/volume-00000002"
check "100%ORIGIN of 1 GiB" "$(field lv_size "$VG/full2")" "$((1032 << 20))"
lvcreate -q -q --yes -s -L 8M -n small "$VG/volume-00000001"
check "thick snapshot" "$(field lv_attr "$VG/small")" "swi-a-s---"

dd if=/dev/urandom of="/dev/$VG/volume-00000001" bs=1M count=64 oflag=direct status=none
check "overflowed thick snapshot attr" "$(field lv_attr "$VG/small")" "swi-I-s---"
check "overflowed thick snapshot snap_percent" "$(field snap_percent "$VG/small")" "100.00"
check "overflowed thick snapshot lv_snapshot_invalid" "$(lvs --noheadings -o lv_snapshot_invalid "$VG/small" | sed 's/^ *//')" "snapshot invalid"
check "100%ORIGIN snapshot after a full overwrite" "$(field lv_attr "$VG/full1")" "swi-a-s---"
if dd if="/dev/$VG/full1" of=/dev/null bs=1M status=none; then r=readable; else r=EIO; fi
check "reading a valid snapshot" "$r" "readable"
if dd if="/dev/$VG/small" of=/dev/null bs=1M count=1 status=none 2>/dev/null; then r=readable; else r=EIO; fi
check "reading an invalid snapshot" "$r" "EIO"

lvcreate -q -q --yes -L 256M -T "$VG/pool"
lvcreate -q -q --yes -V 1G -T "$VG/pool" -n volume-00000010 2>/dev/null
check "thin volume" "$(field lv_attr "$VG/volume-00000010")" "Vwi-a-tz--"
t0=$(date +%s%N)
lvcreate -q -q --yes -s -n thinsnap "$VG/volume-00000010" 2>/dev/null
check "thin snapshot (activation skip)" "$(field lv_attr "$VG/thinsnap")" "Vwi---tz-k"
lvchange -q -q --yes -ay -K "$VG/thinsnap"
echo "     (thin snapshot created and activated in $(ms))"
check "thin snapshot activated with -K" "$(field lv_attr "$VG/thinsnap")" "Vwi-a-tz-k"
check "thin snapshot device" "$(test -b "/dev/$VG/thinsnap" && echo block)" "block"

t0=$(date +%s%N)
lvremove -q -q -f "$VG/thinsnap" "$VG/small" "$VG/full1" "$VG/full2"
echo "     (4 snapshots removed in $(ms))"
check "snapshots removed" "$(lvs --noheadings -o lv_name "$VG" | tr -d ' ' | sort | tr '\n' ' ')" "pool volume-00000001 volume-00000002 volume-00000010 "

[ "$fails" = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
