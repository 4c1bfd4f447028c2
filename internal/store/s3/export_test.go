package s3

// PeakPartBuffers is the most part buffers s held at once so far.
func PeakPartBuffers(s *Store) int64 { return s.peak.Load() }

// SetMaxParts lowers S3's limit of parts per upload for s, so a test
// crosses it with a few parts.
func SetMaxParts(s *Store, n int) { s.maxParts = n }

// PartsHold is the most an upload of limit parts starting at base holds.
var PartsHold = partsHold
