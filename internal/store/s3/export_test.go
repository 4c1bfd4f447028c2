package s3

// PeakPartBuffers is the most part buffers s held at once so far.
func PeakPartBuffers(s *Store) int64 { return s.peak.Load() }
