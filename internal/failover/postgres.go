package failover

import (
	"errors"

	"github.com/clusterd/clusterd/internal/config"
)

func newPostgres(g config.GroupConfig, stateDir string) (Resource, error) {
	return nil, errors.New("group " + g.Name + ": the postgresql resource is not implemented yet; use type exec")
}
