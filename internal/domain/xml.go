package domain

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// Info is what voltar reads of a domain's definition (its live XML).
type Info struct {
	Name  string
	UUID  string
	Disks []Disk
}

// Disk is one <disk> of a domain.
type Disk struct {
	Target string // vda, sdb: the guest's name for it
	Device string // disk, cdrom, floppy, lun
	Type   string // file, block, network, volume, ...
	// Source is the file (type file) or block device (type block) QEMU
	// reads; for a network disk the protocol and name.
	Source    string
	Format    string // the driver's type: raw, qcow2, ...
	ReadOnly  bool
	Shareable bool
	// Skip says why the disk is not backed up; "" when it is.
	Skip string
}

// domainXML is the part of libvirt's domain XML voltar reads.
type domainXML struct {
	Name  string `xml:"name"`
	UUID  string `xml:"uuid"`
	Disks []struct {
		Type   string `xml:"type,attr"`
		Device string `xml:"device,attr"`
		Driver struct {
			Type string `xml:"type,attr"`
		} `xml:"driver"`
		Source *struct {
			File     string `xml:"file,attr"`
			Dev      string `xml:"dev,attr"`
			Protocol string `xml:"protocol,attr"`
			Name     string `xml:"name,attr"`
			Pool     string `xml:"pool,attr"`
			Volume   string `xml:"volume,attr"`
		} `xml:"source"`
		Target struct {
			Dev string `xml:"dev,attr"`
		} `xml:"target"`
		ReadOnly  *struct{} `xml:"readonly"`
		Shareable *struct{} `xml:"shareable"`
	} `xml:"devices>disk"`
}

// Parse reads a domain's XML (virsh dumpxml) and classifies its disks.
func Parse(doc string) (Info, error) {
	var d domainXML
	if err := xml.Unmarshal([]byte(doc), &d); err != nil {
		return Info{}, fmt.Errorf("domain XML: %w", err)
	}
	info := Info{Name: d.Name, UUID: d.UUID}
	for _, x := range d.Disks {
		k := Disk{Target: x.Target.Dev, Device: x.Device, Type: x.Type, Format: x.Driver.Type,
			ReadOnly: x.ReadOnly != nil, Shareable: x.Shareable != nil}
		if k.Device == "" {
			k.Device = "disk"
		}
		if s := x.Source; s != nil {
			switch k.Type {
			case "file":
				k.Source = s.File
			case "block":
				k.Source = s.Dev
			case "network":
				k.Source = strings.Trim(s.Protocol+":"+s.Name, ":")
			case "volume":
				k.Source = s.Pool + "/" + s.Volume
			}
		}
		k.Skip = skipReason(k)
		info.Disks = append(info.Disks, k)
	}
	return info, nil
}

// skipReason says why a disk is not backed up with its domain, "" when
// it is: only the guest's own writable disks on files and block devices
// of this host are.
func skipReason(k Disk) string {
	switch {
	case k.Device == "cdrom" || k.Device == "floppy":
		return k.Device + ": removable media, not the guest's data"
	case k.Type == "network":
		return "network disk (" + k.Source + "): its storage lives elsewhere; back it up there"
	case k.Type != "file" && k.Type != "block":
		return "disk of type " + k.Type + ": voltar reads file and block disks only"
	case k.Source == "":
		return "no source (an empty drive)"
	case k.Shareable:
		return "shareable: other domains write it too; back it up on its own (images:, lvm:)"
	case k.ReadOnly:
		return "read-only: the guest cannot change it; back it up on its own (images:, lvm:) if it holds data"
	case k.Format != "" && k.Format != "raw" && k.Format != "qcow2":
		return "format " + k.Format + ": voltar reads raw and qcow2 disks only"
	}
	return ""
}

// snapshotXML is the <domainsnapshot> of an external disk-only snapshot
// of the disks overlays names (target -> overlay file): each of them
// external into its qcow2 overlay, every other disk of info left out
// (snapshot='no'; a disk-only snapshot would otherwise take them too).
func snapshotXML(info Info, overlays map[string]string) (string, error) {
	type source struct {
		File string `xml:"file,attr"`
	}
	type driver struct {
		Type string `xml:"type,attr"`
	}
	type disk struct {
		Name     string  `xml:"name,attr"`
		Snapshot string  `xml:"snapshot,attr"`
		Type     string  `xml:"type,attr,omitempty"`
		Driver   *driver `xml:"driver"`
		Source   *source `xml:"source"`
	}
	var doc struct {
		XMLName     xml.Name `xml:"domainsnapshot"`
		Description string   `xml:"description"`
		Disks       []disk   `xml:"disks>disk"`
	}
	doc.Description = "voltar: the guest writes here while its disks are backed up; committed back afterwards"
	seen := map[string]bool{}
	for _, k := range info.Disks {
		if k.Target == "" || seen[k.Target] {
			continue
		}
		seen[k.Target] = true
		f, ok := overlays[k.Target]
		if !ok {
			doc.Disks = append(doc.Disks, disk{Name: k.Target, Snapshot: "no"})
			continue
		}
		doc.Disks = append(doc.Disks, disk{Name: k.Target, Snapshot: "external", Type: "file", Driver: &driver{Type: "qcow2"}, Source: &source{File: f}})
	}
	for t := range overlays {
		if !seen[t] {
			return "", fmt.Errorf("domain %s has no disk %s", info.Name, t)
		}
	}
	b, err := xml.Marshal(doc)
	return string(b), err
}
