package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/fail"
	"voltar/internal/volume"
)

// Magic starts every qcow2 image ("QFI\xfb").
var Magic = []byte{'Q', 'F', 'I', 0xfb}

// Header extension types (qemu's docs/interop/qcow2.txt).
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extDataFile      = 0x44415441
)

// Incompatible feature bits that voltar must refuse: the guest's data is
// not (only) in the file it reads.
const incompatDataFile = 1 << 2

// maxChain bounds a backing chain; a longer one is taken for a loop.
const maxChain = 64

// Header is what voltar needs of a qcow2 header.
type Header struct {
	Version     uint32
	VirtualSize int64
	// Backing is the backing file name as the image records it, ""
	// without one; BackingFormat its format when recorded.
	Backing       string
	BackingFormat string
	CryptMethod   uint32
	Incompatible  uint64
	DataFile      string
}

// IsQcow2 reports whether the file at path starts with the qcow2 magic.
func IsQcow2(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [4]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return bytes.Equal(b[:], Magic), nil
}

// ReadHeader parses the header of the qcow2 image r.
func ReadHeader(r io.ReaderAt) (*Header, error) {
	buf := make([]byte, 4096)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	buf = buf[:n]
	if len(buf) < 72 || !bytes.Equal(buf[:4], Magic) {
		return nil, errors.New("not a qcow2 image")
	}
	be := binary.BigEndian
	h := &Header{
		Version:     be.Uint32(buf[4:]),
		VirtualSize: int64(be.Uint64(buf[24:])),
		CryptMethod: be.Uint32(buf[32:]),
	}
	if h.Version != 2 && h.Version != 3 {
		return nil, fmt.Errorf("qcow2 version %d not supported", h.Version)
	}
	if h.VirtualSize < 0 {
		return nil, fmt.Errorf("virtual size %d out of range", uint64(h.VirtualSize))
	}
	extStart := uint64(72)
	if h.Version == 3 {
		if len(buf) < 104 {
			return nil, errors.New("qcow2 v3 header truncated")
		}
		h.Incompatible = be.Uint64(buf[72:])
		extStart = uint64(be.Uint32(buf[100:]))
		if extStart < 104 {
			return nil, fmt.Errorf("qcow2 header length %d too short", extStart)
		}
	}
	// Header extensions, up to the end marker, within the first 4 KiB
	// (qemu keeps them in the first cluster, which is at least 512 bytes).
	for off := extStart; off+8 <= uint64(len(buf)); {
		typ, length := be.Uint32(buf[off:]), uint64(be.Uint32(buf[off+4:]))
		if typ == extEnd {
			break
		}
		data := off + 8
		if data+length > uint64(len(buf)) {
			return nil, fmt.Errorf("qcow2 header extension 0x%08x runs past the header", typ)
		}
		switch typ {
		case extBackingFormat:
			h.BackingFormat = string(buf[data : data+length])
		case extDataFile:
			h.DataFile = string(buf[data : data+length])
		}
		off = data + (length+7)/8*8
	}
	bOff, bLen := be.Uint64(buf[8:]), uint64(be.Uint32(buf[16:]))
	if bOff != 0 && bLen > 0 {
		if bLen > 1023 {
			return nil, fmt.Errorf("backing file name of %d bytes (qemu allows 1023)", bLen)
		}
		name := make([]byte, bLen)
		if _, err := r.ReadAt(name, int64(bOff)); err != nil {
			return nil, fmt.Errorf("read backing file name: %w", err)
		}
		h.Backing = string(name)
	}
	return h, nil
}

// Chain opens the qcow2 image at path (absolute) and follows its backing
// files: it returns the image's header and its backing files, nearest
// first, each resolved as qemu resolves it: an absolute name as it is, a
// relative one against the directory of the image that names it (not
// following that image's symlinks, as qemu does not). A backing file that
// is missing, a loop, an encrypted image, an external data file or a
// backing file that is not a plain file name (nbd:, json:) is an error.
func Chain(path string) (*Header, []volume.Layer, error) {
	top, err := header(path)
	if err != nil {
		return nil, nil, err
	}
	var chain []volume.Layer
	seen := map[[2]uint64]bool{}
	if id, err := fileID(path); err == nil {
		seen[id] = true
	}
	h, from := top, path
	for h != nil && h.Backing != "" {
		if len(chain) >= maxChain {
			return nil, nil, fmt.Errorf("backing chain of %s longer than %d files", path, maxChain)
		}
		bpath, err := resolveBacking(from, h.Backing)
		if err != nil {
			return nil, nil, err
		}
		fi, err := os.Stat(bpath)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, fail.Hint(fmt.Errorf("backing file %q of %s: %s does not exist", h.Backing, from, bpath),
					"qemu looks for a relative backing file name in the directory of the image that names it; put the file there, or point the image at it: `qemu-img rebase -u -b NEWPATH -F qcow2 %s` (check `qemu-img info --backing-chain %s` after)", from, path)
			}
			return nil, nil, fmt.Errorf("backing file of %s: %w", from, err)
		}
		if fi.IsDir() {
			return nil, nil, fmt.Errorf("backing file %q of %s is a directory", h.Backing, from)
		}
		if id, err := fileID(bpath); err == nil {
			if seen[id] {
				return nil, nil, fail.Hint(fmt.Errorf("backing chain of %s loops at %s", path, bpath), "check it with `qemu-img info --backing-chain %s`", path)
			}
			seen[id] = true
		}
		format := h.BackingFormat
		if format == "" {
			// Not recorded: qemu 7.2 probes the file's content.
			ok, err := IsQcow2(bpath)
			if err != nil {
				return nil, nil, fmt.Errorf("backing file of %s: %w", from, err)
			}
			format = "raw"
			if ok {
				format = "qcow2"
			}
		}
		switch format {
		case "qcow2":
			bh, err := header(bpath)
			if err != nil {
				return nil, nil, err
			}
			chain = append(chain, volume.Layer{Path: bpath, Format: format, Size: bh.VirtualSize})
			h, from = bh, bpath
		case "raw":
			size, err := fileSize(bpath)
			if err != nil {
				return nil, nil, fmt.Errorf("backing file of %s: %w", from, err)
			}
			chain = append(chain, volume.Layer{Path: bpath, Format: format, Size: size})
			h = nil
		default:
			return nil, nil, fail.Hint(fmt.Errorf("backing file %s of %s is in format %s", bpath, from, format),
				"voltar reads qcow2 and raw backing files; convert it with `qemu-img convert -O qcow2`")
		}
	}
	return top, chain, nil
}

// header reads and checks the header of the qcow2 image at path.
func header(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case h.CryptMethod != 0:
		return nil, fail.Hint(fmt.Errorf("%s is an encrypted qcow2 image", path),
			"voltar cannot read encrypted qcow2 images (it has no key); back up the guest's disk from inside, or decrypt a copy with `qemu-img convert`")
	case h.Incompatible&incompatDataFile != 0 || h.DataFile != "":
		return nil, fail.Hint(fmt.Errorf("%s keeps its data in an external data file (%q)", path, h.DataFile),
			"voltar reads qcow2 images that hold their own data; convert it with `qemu-img convert -O qcow2`")
	}
	return h, nil
}

// resolveBacking resolves the backing file name name of the image at
// image as qemu does (path_combine): absolute as is, else relative to the
// image's directory. "file:" is stripped; any other protocol prefix (a
// colon before the first slash) is refused.
func resolveBacking(image, name string) (string, error) {
	name = strings.TrimPrefix(name, "file:")
	if i := strings.IndexByte(name, ':'); i >= 0 && !strings.Contains(name[:i], "/") {
		return "", fail.Hint(fmt.Errorf("backing file %q of %s is not a local file", name, image),
			"voltar reads backing files on local filesystems only (no nbd:, json:, rbd: ...)")
	}
	if filepath.IsAbs(name) {
		return filepath.Clean(name), nil
	}
	return filepath.Join(filepath.Dir(image), name), nil
}

func fileID(path string) ([2]uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return [2]uint64{}, err
	}
	return [2]uint64{st.Dev, st.Ino}, nil
}

// fileSize is the size of a file or a block device.
func fileSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}
