package main

import (
	"context"
	"fmt"
	"time"

	"voltar/internal/fail"
	"voltar/internal/store"
	"voltar/internal/store/s3"
)

// s3CheckTimeout bounds the request that proves an S3 store usable.
const s3CheckTimeout = 20 * time.Second

// openS3 opens s3://bucket/prefix (see s3Config) and checks with one
// request that the endpoint answers, the bucket exists and the keys work.
func (a *app) openS3(ctx context.Context, name string) (store.Store, error) {
	cfg, err := a.s3Config(name)
	if err != nil {
		return nil, err
	}
	st, err := s3.New(cfg)
	if err != nil {
		return nil, fail.Usage(fmt.Errorf("store %s: %w", name, err))
	}
	cctx, cancel := context.WithTimeout(ctx, s3CheckTimeout)
	defer cancel()
	if err := st.Check(cctx); err != nil {
		return nil, err
	}
	return st, nil
}
