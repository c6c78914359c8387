.PHONY: build test demo
# The version comes from git: the newest tag (or the commit when there is
# none), with -dirty for uncommitted changes. `clusterd version` prints it.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/clusterd/clusterd/internal/version.Version=$(VERSION) -X github.com/clusterd/clusterd/internal/version.Commit=$(COMMIT)

build:
	go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/clusterd ./cmd/clusterctl
test:
	./scripts/test.sh
demo:
	./scripts/demo.sh
