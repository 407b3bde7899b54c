package main

import (
	"errors"

	"github.com/cassback/cassback/remote"
)

// openSurvey opens the survey endpoint (not built yet).
func (g *globals) openSurvey(create bool) (remote.Store, error) {
	return nil, errors.New("the survey endpoint is not available in this version; use --endpoint local")
}
