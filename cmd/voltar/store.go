package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"voltar/internal/fail"
	"voltar/internal/store"
	"voltar/internal/store/s3"
)

// s3CheckTimeout bounds the request that proves an S3 store usable.
const s3CheckTimeout = 20 * time.Second

// openS3 opens s3://bucket/prefix with the S3 settings of the config's
// store section, also when the name came from --to or a dead run's
// journal, and checks with one request that the endpoint answers, the
// bucket exists and the keys work.
func (a *app) openS3(ctx context.Context, name string) (store.Store, error) {
	set, err := a.cfg.Store.S3(name)
	if err != nil {
		return nil, fail.Usage(fmt.Errorf("store %s: %w", name, err))
	}
	creds, err := s3.LoadCredentials(set.AccessKeyFile, set.SecretKeyFile, os.Getenv, func(file string) {
		a.log.Warn("S3 key file is readable by others; chmod 0600 it", "file", file)
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", name, err)
	}
	st, err := s3.New(s3.Config{
		Endpoint: set.Endpoint, Secure: set.Secure, Region: set.Region,
		Bucket: set.Bucket, Prefix: set.Prefix, Credentials: creds, CAFile: set.CAFile,
		VirtualHost: !set.PathStyle, PartSize: set.PartSize,
	})
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
