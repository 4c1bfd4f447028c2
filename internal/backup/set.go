package backup

import (
	"voltar/internal/manifest"
	"voltar/internal/volume"
)

// setOf is the manifest's record of the disks snapshotted together with
// s (a libvirt domain's), nil for a volume taken alone.
func setOf(s *volume.Snapshot) *manifest.Set {
	if s.Set == nil {
		return nil
	}
	ms := &manifest.Set{ID: s.Set.ID, Domain: s.Set.Domain, UUID: s.Set.UUID, Disk: s.Set.Disk}
	for _, d := range s.Set.Disks {
		ms.Disks = append(ms.Disks, manifest.SetDisk{Target: d.Target, Volume: d.Volume})
	}
	return ms
}
