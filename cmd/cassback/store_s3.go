package main

import (
	"errors"

	"github.com/cassback/cassback/remote"
)

// openS3 opens the S3 endpoint (not built yet).
func (g *globals) openS3(create bool) (remote.Store, error) {
	return nil, errors.New("the s3 endpoint is not available in this version; use --endpoint local")
}
