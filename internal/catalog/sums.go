package catalog

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"voltar/internal/layout"
	"voltar/internal/store"
)

// Sums maps object names (relative to the backup folder) to lowercase hex
// SHA-256 digests, as listed in SHA256SUMS.
type Sums map[string]string

// ParseSums reads sha256sum output: "<hex>  <name>" or "<hex> *<name>" per
// line, with sha256sum's backslash escaping of names holding "\" or newline.
func ParseSums(r io.Reader) (Sums, error) {
	sums := Sums{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		escaped := strings.HasPrefix(line, "\\")
		if escaped {
			line = line[1:]
		}
		if len(line) < 64+2 || (line[64:66] != "  " && line[64:66] != " *") {
			return nil, fmt.Errorf("%s line %d: not \"<sha256>  <name>\"", layout.Sums, n)
		}
		sum := strings.ToLower(line[:64])
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("%s line %d: %q is not a hex SHA-256", layout.Sums, n, line[:64])
		}
		name := line[66:]
		if escaped {
			name = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(name)
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("%s line %d: %s listed twice", layout.Sums, n, name)
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", layout.Sums, err)
	}
	return sums, nil
}

// ErrNoSums is returned by ReadSums for a backup folder without SHA256SUMS.
var ErrNoSums = errors.New("no " + layout.Sums)

// ReadSums reads and parses the backup's SHA256SUMS.
func ReadSums(ctx context.Context, st store.Store, b *Backup) (Sums, error) {
	rc, err := st.Get(ctx, b.Key(layout.Sums))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSums
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.Key(layout.Sums), err)
	}
	defer rc.Close()
	return ParseSums(rc)
}
