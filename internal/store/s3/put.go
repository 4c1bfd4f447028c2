package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"voltar/internal/store"
	"voltar/internal/units"
)

const (
	// buffersPerPut bounds a Put's memory: while one part uploads, the
	// next fills from the reader, so a Put holds at most
	// buffersPerPut x part size = 2 x 16 MiB = 32 MiB at the default part
	// size, for any object up to half of maxParts parts (partSizeAt). voltar backs up several volumes at
	// once (one Put each) within a whole-process budget of 256 MiB.
	buffersPerPut = 2
	// maxParts is S3's limit on the parts of one object. With parts of
	// one size that is 156 GiB at the default 16 MiB; parts grow as an
	// upload goes on (partSizeAt), so an object of unknown size (a dump)
	// may be larger.
	maxParts = 10000
	// abortTimeout bounds aborting a failed upload, which runs even when
	// the Put's context is cancelled.
	abortTimeout = time.Minute
	// maxPartSize is S3's largest part.
	maxPartSize = 5 << 30
)

// Put implements store.Store. An object that fits in one part goes up in a
// single PUT; a larger one as a multipart upload, which the server makes
// visible only when it is completed, after the last part. Every part and
// every single PUT carries its MD5 (Content-MD5) and a SHA-256 of the
// payload (signed over https, per chunk over http), so the server refuses
// bytes corrupted on the way instead of storing them. A read error, a
// failed part or a cancelled ctx aborts the upload (the abort itself runs
// outside ctx, so it happens although ctx is done).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	obj, err := s.object(key)
	if err != nil {
		return 0, err
	}
	src := store.ContextReader(ctx, r)
	size := s.partSizeFor(opts.SizeHint)
	first := s.getBuf(size)
	n, err := io.ReadFull(src, *first)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		defer s.putBuf(first)
		data := (*first)[:n]
		md5b64, sha := s.sums(data)
		if _, err := s.core.PutObject(ctx, s.bucket, obj, bytes.NewReader(data), int64(n), md5b64, sha, minio.PutObjectOptions{}); err != nil {
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		return int64(n), nil
	case err != nil:
		s.putBuf(first)
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	return s.putMultipart(ctx, key, obj, src, first, size)
}

// partSizeFor returns the first part size of one Put: the configured one,
// or, when the caller's PutOptions.SizeHint says the object may need more
// than 99% of maxParts of those, the size that fits it in that many parts
// (rounded up to MiB, at most 5 GiB, S3's largest part). A huge volume's
// archive then costs more memory (two parts) instead of failing after
// hours of upload.
func (s *Store) partSizeFor(hint int64) int64 {
	fit := int64(s.maxParts - s.maxParts/100)
	if hint <= 0 || hint <= s.partSize*fit {
		return s.partSize
	}
	need := (hint + fit - 1) / fit
	need = (need + 1<<20 - 1) &^ (1<<20 - 1)
	return min(need, maxPartSize)
}

// partSizeAt is the size of part num (from 1) of an upload whose first
// part has base bytes and which may have limit parts. The first half of
// the parts keep base; after that the size doubles every limit/20 parts,
// up to S3's largest part. An object of unknown size (a dump has no size
// hint) then fits however large it grows, up to partsHold: about 8.8 TiB
// from 16 MiB parts, where one size would stop at 156 GiB. Objects within
// the first half (78 GiB at 16 MiB) never see a larger part; beyond it
// the memory of an upload (two parts) doubles with the part size.
func partSizeAt(num, limit int, base int64) int64 {
	half := limit / 2
	if num <= half {
		return base
	}
	step := max(1, limit/20)
	shift := min((num-half-1)/step+1, 30)
	return min(base<<shift, max(base, maxPartSize))
}

// partsHold is the most an upload of limit parts starting at base holds.
func partsHold(limit int, base int64) int64 {
	var n int64
	for num := 1; num <= limit; num++ {
		n += partSizeAt(num, limit, base)
	}
	return n
}

// putMultipart uploads first, which is full, and the rest of src in parts.
func (s *Store) putMultipart(ctx context.Context, key, obj string, src io.Reader, first *[]byte, size int64) (total int64, err error) {
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, obj, minio.PutObjectOptions{})
	if err != nil {
		s.putBuf(first)
		return 0, fmt.Errorf("start upload of %s: %w", key, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Not under ctx alone: a cancelled run must not leave parts behind.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if aerr := s.core.AbortMultipartUpload(actx, s.bucket, obj, uploadID); aerr != nil && !isNoSuchUpload(aerr) {
			err = fmt.Errorf("%w (aborting the upload failed too: %v; voltar's next run or prune aborts it)", err, aerr)
		}
	}()

	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []minio.CompletePart
		upErr error
	)
	// Every buffer ends up in free: returned by its upload, or unused.
	free := make(chan *[]byte, buffersPerPut)
	allocated := 1
	buf, fill := first, len(*first)
	partSize := size // of the part being filled
	for num := 1; ; num++ {
		data := (*buf)[:fill]
		total += int64(fill)
		wg.Add(1)
		go func(num int, b *[]byte) {
			defer wg.Done()
			part, err := s.uploadPart(uctx, obj, uploadID, num, data)
			mu.Lock()
			if err != nil && upErr == nil {
				upErr = err
				cancel()
			}
			parts = append(parts, part)
			mu.Unlock()
			free <- b
		}(num, buf)
		if int64(fill) < partSize {
			break // that was the short last part
		}
		if num == s.maxParts {
			// Only now is it known that more follows: a last part that
			// ended exactly at the limit was fine.
			switch _, rerr := io.ReadFull(src, make([]byte, 1)); {
			case rerr == nil:
				err = fmt.Errorf("%s is larger than S3's %d parts hold, even growing from %s (%s): raise store.part_size",
					key, s.maxParts, units.Bytes(size), units.Bytes(partsHold(s.maxParts, size)))
			case rerr != io.EOF:
				err = fmt.Errorf("read %s: %w", key, rerr)
			}
			break
		}
		partSize = partSizeAt(num+1, s.maxParts, size)
		if allocated < buffersPerPut {
			buf = s.getBuf(partSize)
			allocated++
		} else {
			select {
			case buf = <-free:
			case <-uctx.Done():
				buf = nil
			}
		}
		if buf == nil || uctx.Err() != nil {
			if buf != nil {
				free <- buf
			}
			break
		}
		if int64(cap(*buf)) < partSize {
			// The parts have grown: this buffer is too small.
			s.putBuf(buf)
			buf = s.getBuf(partSize)
		}
		*buf = (*buf)[:partSize]
		var rerr error
		fill, rerr = io.ReadFull(src, *buf)
		if rerr == io.EOF {
			free <- buf // the last part was full
			break
		}
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			free <- buf
			err = fmt.Errorf("read %s: %w", key, rerr)
			break
		}
		if uctx.Err() != nil {
			free <- buf // an upload failed meanwhile
			break
		}
	}
	if err != nil {
		cancel() // stop the uploads in flight
	}
	wg.Wait()
	for range allocated {
		s.putBuf(<-free)
	}
	switch {
	case err != nil:
		return 0, err
	case ctx.Err() != nil:
		return 0, fmt.Errorf("upload %s: %w", key, ctx.Err())
	case upErr != nil:
		return 0, fmt.Errorf("upload %s: %w", key, upErr)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].PartNumber < parts[j].PartNumber })
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, uploadID, parts, minio.PutObjectOptions{}); err != nil {
		return 0, fmt.Errorf("complete upload of %s: %w", key, err)
	}
	return total, nil
}

func (s *Store) uploadPart(ctx context.Context, obj, uploadID string, num int, data []byte) (minio.CompletePart, error) {
	md5b64, sha := s.sums(data)
	p, err := s.core.PutObjectPart(ctx, s.bucket, obj, uploadID, num, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectPartOptions{Md5Base64: md5b64, Sha256Hex: sha})
	if err != nil {
		return minio.CompletePart{}, fmt.Errorf("part %d: %w", num, err)
	}
	return minio.CompletePart{PartNumber: num, ETag: p.ETag}, nil
}

// sums returns the Content-MD5 and, over https, the SHA-256 the request is
// signed with. Over plain http minio-go signs each chunk's SHA-256 itself.
func (s *Store) sums(data []byte) (md5b64, sha256hex string) {
	m := md5.Sum(data)
	md5b64 = base64.StdEncoding.EncodeToString(m[:])
	if s.secure {
		h := sha256.Sum256(data)
		sha256hex = hex.EncodeToString(h[:])
	}
	return md5b64, sha256hex
}

// getBuf returns a buffer of size bytes: from the pool for the configured
// part size, else newly made.
func (s *Store) getBuf(size int64) *[]byte {
	n := s.held.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if size != s.partSize {
		b := make([]byte, size)
		return &b
	}
	return s.bufs.Get().(*[]byte)
}

func (s *Store) putBuf(b *[]byte) {
	s.held.Add(-1)
	if int64(len(*b)) == s.partSize {
		s.bufs.Put(b)
	}
}
