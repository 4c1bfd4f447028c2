package restore

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"voltar/internal/disk"
	"voltar/internal/manifest"
)

// sfdiskScript renders the manifest's partition table as sfdisk(8) script
// input for a target with the given logical sector size: label, label-id,
// and per partition its number, start, size, type, GPT UUID and flags.
// GPT names are set afterwards with sfdisk --part-label, which takes any
// characters (the script format cannot quote a '"').
//
// The manifest lists the partitions that hold data, not an MBR's extended
// container; when there are logical partitions one is re-made in a free
// primary slot, spanning them from just after the preceding primary.
func sfdiskScript(t manifest.Table, sector int64) (string, error) {
	var b strings.Builder
	var label string
	switch t.Type {
	case "mbr":
		label = "dos"
	case "gpt":
		label = "gpt"
	default:
		return "", fmt.Errorf("partition table type %q cannot be re-made", t.Type)
	}
	fmt.Fprintf(&b, "label: %s\n", label)
	if t.DiskID != "" {
		fmt.Fprintf(&b, "label-id: %s\n", t.DiskID)
	}
	switch {
	case label == "gpt" && t.FirstLBA > 0 && int64(t.SectorSize) == sector:
		// As recorded, when the target's sectors are the source's.
		fmt.Fprintf(&b, "first-lba: %d\nlast-lba: %d\n", t.FirstLBA, t.LastLBA)
	case label == "gpt":
		// Not recorded (an older manifest), or other sectors. sfdisk's
		// default is 1 MiB; a partition starting below it (as sgdisk
		// and parted allow) needs the lowest possible, 34.
		for _, p := range t.Partitions {
			if p.Start < 2048*sector {
				b.WriteString("first-lba: 34\n")
				break
			}
		}
	}
	b.WriteString("unit: sectors\n\n")

	parts := append([]manifest.Partition(nil), t.Partitions...)
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	sectors := func(p manifest.Partition) (int64, int64, error) {
		if p.Start%sector != 0 || p.Size%sector != 0 {
			return 0, 0, fmt.Errorf("partition %d (start %d, size %d bytes) is not aligned to the target's %d-byte sectors",
				p.Number, p.Start, p.Size, sector)
		}
		return p.Start / sector, p.Size / sector, nil
	}
	if label == "dos" {
		if len(t.Extended) > 0 {
			// As recorded: the container keeps its extent.
			parts = append(parts, t.Extended...)
		} else if ext, err := extendedFor(parts, sector); err != nil {
			return "", err
		} else if ext != nil {
			parts = append(parts, *ext)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	}
	for _, p := range parts {
		start, size, err := sectors(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "part%d : start=%d, size=%d, type=%s", p.Number, start, size, sfdiskType(label, p.Type))
		if label == "gpt" && p.UUID != "" {
			fmt.Fprintf(&b, ", uuid=%s", p.UUID)
		}
		switch {
		case label == "gpt" && p.Attrs != 0:
			fmt.Fprintf(&b, `, attrs="%s"`, gptAttrs(p.Attrs))
		case label == "gpt" && p.Bootable: // a manifest from before attrs
			b.WriteString(`, attrs="LegacyBIOSBootable"`)
		case p.Bootable:
			b.WriteString(", bootable")
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// extParams are mke2fs options that re-make what the backup recorded: the
// block size, inode size and count, and exactly the recorded features.
// Only names mke2fs knows are passed (the manifest is read from a store).
func extParams(mp *manifest.MkfsParams) []string {
	if mp == nil {
		return nil
	}
	var args []string
	if mp.BlockSize >= 1024 && mp.BlockSize <= 65536 {
		args = append(args, "-b", strconv.Itoa(mp.BlockSize))
	}
	if mp.InodeSize >= 128 && mp.InodeSize <= mp.BlockSize {
		args = append(args, "-I", strconv.Itoa(mp.InodeSize))
	}
	if mp.Inodes > 0 {
		args = append(args, "-N", strconv.FormatInt(mp.Inodes, 10))
	}
	if len(mp.Features) > 0 {
		feats := []string{"none"}
		for _, f := range mp.Features {
			if disk.ExtFeature(f) {
				feats = append(feats, f)
			}
		}
		args = append(args, "-O", strings.Join(feats, ","))
	}
	return args
}

// xfsParams are mkfs.xfs options for the recorded block, sector and inode
// sizes, and every recorded feature on or off.
func xfsParams(mp *manifest.MkfsParams) []string {
	if mp == nil {
		return nil
	}
	var args []string
	if mp.BlockSize >= 512 && mp.BlockSize <= 65536 {
		args = append(args, "-b", "size="+strconv.Itoa(mp.BlockSize))
	}
	if mp.SectorSize >= 512 && mp.SectorSize <= 32768 {
		args = append(args, "-s", "size="+strconv.Itoa(mp.SectorSize))
	}
	on := map[string]string{}
	for _, f := range disk.XFSFeatures {
		on[f] = "0"
	}
	for _, f := range mp.Features {
		if _, ok := on[f]; ok {
			on[f] = "1"
		}
	}
	inode := "sparse=" + on["sparse"]
	if mp.InodeSize >= 256 && mp.InodeSize <= 2048 {
		inode = "size=" + strconv.Itoa(mp.InodeSize) + "," + inode
	}
	args = append(args, "-i", inode,
		"-m", fmt.Sprintf("crc=%s,finobt=%s,rmapbt=%s,reflink=%s,bigtime=%s,inobtcount=%s",
			on["crc"], on["finobt"], on["rmapbt"], on["reflink"], on["bigtime"], on["inobtcount"]),
		"-n", "ftype="+on["ftype"])
	return args
}

// btrfsProfiles are the block group profiles mkfs.btrfs -d and -m take.
var btrfsProfiles = map[string]bool{"single": true, "dup": true, "raid0": true, "raid1": true, "raid10": true,
	"raid5": true, "raid6": true, "raid1c3": true, "raid1c4": true}

// btrfsParams are mkfs.btrfs options for the recorded sector and node
// sizes, profiles, and every feature it knows on or off (so a newer
// mkfs.btrfs's defaults do not change them).
func btrfsParams(mp *manifest.MkfsParams) []string {
	if mp == nil {
		return nil
	}
	var args []string
	pow2 := func(n, lo, hi int) bool { return n >= lo && n <= hi && n&(n-1) == 0 }
	if pow2(mp.SectorSize, 4096, 65536) {
		args = append(args, "-s", strconv.Itoa(mp.SectorSize))
	}
	if pow2(mp.NodeSize, 4096, 65536) {
		args = append(args, "-n", strconv.Itoa(mp.NodeSize))
	}
	if btrfsProfiles[mp.DataProfile] {
		args = append(args, "-d", mp.DataProfile)
	}
	if btrfsProfiles[mp.MetadataProfile] {
		args = append(args, "-m", mp.MetadataProfile)
	}
	if len(mp.Features) == 0 {
		return args
	}
	var opts []string
	runtime := "^free-space-tree"
	for _, f := range disk.BtrfsFeatures {
		on := slices.Contains(mp.Features, f)
		switch {
		case f == "free-space-tree":
			if on {
				runtime = f
			}
		case on:
			opts = append(opts, f)
		default:
			opts = append(opts, "^"+f)
		}
	}
	return append(args, "-O", strings.Join(opts, ","), "-R", runtime)
}

// btrfsCompression is the mount option that compresses restored data as
// the source's was: zstd if the source used it, else lzo; "" for none.
func btrfsCompression(mp *manifest.MkfsParams) string {
	if mp == nil {
		return ""
	}
	for _, alg := range []string{"zstd", "lzo"} {
		if slices.Contains(mp.Compression, alg) {
			return "compress=" + alg
		}
	}
	return ""
}

// gptAttrs spells GPT attribute bits as sfdisk's attrs= takes them:
// "RequiredPartition NoBlockIOProtocol LegacyBIOSBootable GUID:60,63".
func gptAttrs(a uint64) string {
	var out, guid []string
	for bit, name := range []string{"RequiredPartition", "NoBlockIOProtocol", "LegacyBIOSBootable"} {
		if a&(1<<bit) != 0 {
			out = append(out, name)
		}
	}
	for bit := 48; bit < 64; bit++ {
		if a&(1<<bit) != 0 {
			guid = append(guid, strconv.Itoa(bit))
		}
	}
	if len(guid) > 0 {
		out = append(out, "GUID:"+strings.Join(guid, ","))
	}
	return strings.Join(out, " ")
}

// sfdiskType turns "0x83" into sfdisk's "83"; GPT type GUIDs pass as they are.
func sfdiskType(label, typ string) string {
	if label == "dos" {
		return strings.TrimPrefix(strings.ToLower(typ), "0x")
	}
	return typ
}

// extendedFor makes the MBR extended partition holding the logical ones.
func extendedFor(parts []manifest.Partition, sector int64) (*manifest.Partition, error) {
	var first, end int64 = -1, 0
	used := map[int]bool{}
	for _, p := range parts {
		if !p.Logical {
			used[p.Number] = true
			continue
		}
		if first < 0 || p.Start < first {
			first = p.Start
		}
		end = max(end, p.Start+p.Size)
	}
	if first < 0 {
		return nil, nil
	}
	slot := 0
	for n := 1; n <= 4; n++ {
		if !used[n] {
			slot = n
			break
		}
	}
	if slot == 0 {
		return nil, fmt.Errorf("mbr table has logical partitions but four primary ones: no slot for the extended partition")
	}
	// The first logical partition's EBR sits at the container's start:
	// begin up to 1 MiB earlier, but not inside a primary partition.
	start := max(first-1<<20, sector)
	for _, p := range parts {
		if !p.Logical && p.Start < first && p.Start+p.Size > start {
			start = p.Start + p.Size
		}
	}
	if start >= first {
		return nil, fmt.Errorf("no room for the extended partition's boot record before logical partition at byte %d", first)
	}
	return &manifest.Partition{Number: slot, Start: start, Size: end - start, Type: "0x05"}, nil
}

// mkfsCommand returns the command that re-makes a filesystem with its
// type, UUID and label on dev.
func mkfsCommand(fs manifest.Filesystem, dev string) ([]string, error) {
	var args []string
	switch fs.Type {
	case "ext2", "ext3", "ext4":
		args = []string{"mkfs." + fs.Type, "-q", "-F"}
		if fs.UUID != "" {
			args = append(args, "-U", fs.UUID)
		}
		if fs.Label != "" {
			args = append(args, "-L", fs.Label)
		}
		args = append(args, extParams(fs.Mkfs)...)
	case "xfs":
		args = []string{"mkfs.xfs", "-q", "-f"}
		if fs.UUID != "" {
			args = append(args, "-m", "uuid="+fs.UUID)
		}
		if fs.Label != "" {
			args = append(args, "-L", fs.Label)
		}
		args = append(args, xfsParams(fs.Mkfs)...)
	case "btrfs":
		args = []string{"mkfs.btrfs", "-q", "-f"}
		if fs.UUID != "" {
			args = append(args, "-U", fs.UUID)
		}
		if fs.Label != "" {
			args = append(args, "-L", fs.Label)
		}
		args = append(args, btrfsParams(fs.Mkfs)...)
	case "vfat":
		args = []string{"mkfs.vfat"}
		if fs.UUID != "" {
			// blkid shows the volume serial as "ABCD-1234".
			args = append(args, "-i", strings.ReplaceAll(fs.UUID, "-", ""))
		}
		if fs.Label != "" {
			args = append(args, "-n", fs.Label)
		}
	case "swap":
		args = []string{"mkswap"}
		if fs.UUID != "" {
			args = append(args, "-U", fs.UUID)
		}
		if fs.Label != "" {
			args = append(args, "-L", fs.Label)
		}
	default:
		return nil, fmt.Errorf("%s: cannot re-make a %q filesystem", fs.Name, fs.Type)
	}
	return append(args, dev), nil
}
