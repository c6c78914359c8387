.PHONY: build test demo package deb clean
# The version comes from git (scripts/version.sh): a release tag, else
# 0.1.0~git<commit time>.<commit>. `clusterd version` prints it.
VERSION ?= $(shell ./scripts/version.sh)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
ARCH    ?= amd64
LDFLAGS := -X github.com/clusterd/clusterd/internal/version.Version=$(VERSION) -X github.com/clusterd/clusterd/internal/version.Commit=$(COMMIT)
# nfpm builds the .deb and .rpm; pinned, fetched from the Go module proxy.
NFPM    := go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST    ?= dist

build:
	go build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/clusterd ./cmd/clusterctl
test:
	./scripts/test.sh
demo:
	./scripts/demo.sh

# dist/: clusterd_VERSION_ARCH.deb, clusterd-VERSION.x86_64.rpm, and the
# Windows .zip.
package: deb
	VERSION='$(VERSION)' ARCH=$(ARCH) $(NFPM) package --config packaging/nfpm.yaml --packager rpm --target $(DIST)/
	rm -rf bin/windows
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/windows/ ./cmd/clusterd ./cmd/clusterctl
	go run ./packaging/winzip -version '$(VERSION)' -bin bin/windows -out $(DIST)
	ls -l $(DIST)

# The .deb alone (the package test builds two versions of it).
deb:
	rm -rf $(DIST) && mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) go build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/clusterd ./cmd/clusterctl
	VERSION='$(VERSION)' ARCH=$(ARCH) $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/

clean:
	rm -rf bin dist
