// Package layout owns every name in a store: the folders backups and dumps
// are written to, the objects inside them, and the grammar of both. Names
// are built and parsed here and nowhere else, so a new kind of object is
// one change in one place, and a reader and a writer cannot disagree.
//
//	<host>/<group>/<volume>/<timestamp>/   a volume's backup (group: the VG, or "image")
//	<host>/dumps/<name>/<timestamp>/       a database dump
//
// and in each folder
//
//	<fs>.<kind>[.zst|.gz][.age]   one object per filesystem or dump
//	outside.runs[.zst|.gz][.age]  the volume's bytes no filesystem holds
//	SHA256SUMS                    sha256sum format, names relative to the folder
//	manifest.json.sig             an OpenSSH signature of the manifest (when a key is configured)
//	manifest.json.sha256          the manifest's own checksum, written before it
//	manifest.json                 written last: without it the folder is no backup
//
// The names are a contract with the operator too: every object restores
// with zstd -d, age -d and tar, and `sha256sum -c SHA256SUMS` checks it.
package layout

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Fixed object names of a folder.
const (
	// Sums lists the SHA-256 of every stored object of the folder.
	Sums = "SHA256SUMS"
	// Manifest describes the backup; it is written last.
	Manifest = "manifest.json"
	// ManifestSum holds the manifest's SHA-256 in sha256sum format. It is
	// written before the manifest, so every complete folder has it.
	ManifestSum = Manifest + ".sha256"
	// ManifestSig is the manifest's OpenSSH signature (`ssh-keygen -Y
	// sign`, namespace SigNamespace), written before the manifest when a
	// signing key is configured.
	ManifestSig = Manifest + ".sig"
	// SigNamespace is the namespace of ManifestSig: a signature made for
	// anything else (a git commit, a file) does not pass for a manifest's.
	SigNamespace = "voltar-manifest"
)

// TimeFormat is the UTC timestamp naming a folder: 2026-11-25T013000Z.
// Folders sort by time as strings.
const TimeFormat = "2006-01-02T150405Z"

// DumpGroup is the group segment of every dump folder:
// <host>/dumps/<name>/<timestamp>/.
const DumpGroup = "dumps"

// FormatTime names the folder of a backup started at t.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ParseTime reads a folder's timestamp.
func ParseTime(s string) (time.Time, error) { return time.Parse(TimeFormat, s) }

// Folder is the store prefix of a backup of group/volume taken at ts,
// with its trailing slash: <host>/<group>/<volume>/<timestamp>/.
func Folder(host, group, volume string, ts time.Time) string {
	return path.Join(host, group, volume, FormatTime(ts)) + "/"
}

// DumpFolder is the store prefix of the dump name taken at ts.
func DumpFolder(host, name string, ts time.Time) string {
	return Folder(host, DumpGroup, name, ts)
}

// ID is a backup's ID without its host: <group>/<volume>/<timestamp>.
func ID(group, volume string, ts time.Time) string {
	return group + "/" + volume + "/" + FormatTime(ts)
}

// Key is an object key split into the folder it lies in and its name.
type Key struct {
	Host, Group, Volume string
	Time                time.Time
	Name                string // the object's name inside the folder
}

// ParseKey splits <host>/<group>/<volume>/<timestamp>/<name>. A key
// outside the layout (too few segments, no name, a timestamp that is not
// one) is not ok. The name may hold further slashes; it is not checked.
func ParseKey(key string) (Key, bool) {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) < 5 || parts[4] == "" {
		return Key{}, false
	}
	t, err := ParseTime(parts[3])
	if err != nil {
		return Key{}, false
	}
	return Key{Host: parts[0], Group: parts[1], Volume: parts[2], Time: t, Name: parts[4]}, true
}

// Prefix is the folder k lies in, with its trailing slash. It is joined
// as the key was split (no path cleaning), so it is a prefix of the key.
func (k Key) Prefix() string {
	return k.Host + "/" + k.Group + "/" + k.Volume + "/" + FormatTime(k.Time) + "/"
}

// ID is the ID of the backup k belongs to.
func (k Key) ID() string { return ID(k.Group, k.Volume, k.Time) }

// CheckID checks <group>/<volume>/<timestamp>: three path segments, none
// empty or a dot, and a timestamp in TimeFormat.
func CheckID(id string) error {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return errors.New("want <group>/<volume>/<timestamp>")
	}
	for _, s := range parts {
		if s == "" || s == "." || s == ".." || hasControl(s) || strings.ContainsRune(s, '\\') {
			return fmt.Errorf("segment %q is not a plain name", s)
		}
	}
	if _, err := ParseTime(parts[2]); err != nil {
		return fmt.Errorf("timestamp %q: want UTC like %s", parts[2], TimeFormat)
	}
	return nil
}

// ValidHost checks a host name as it names the top folder of the store:
// one path segment of letters, digits, '.', '_' and '-', not "." or "..".
// The config, the command line and manifests are all held to it.
func ValidHost(h string) error {
	switch h {
	case "":
		return errors.New("host is empty")
	case ".", "..":
		return fmt.Errorf("host %q: not a name", h)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("host %q: only letters, digits, '.', '_' and '-' may name the host's folder in the store", h)
		}
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}
