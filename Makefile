.PHONY: build test demo
build:
	go build -o bin/ ./cmd/clusterd ./cmd/clusterctl
test:
	./scripts/test.sh
demo:
	./scripts/demo.sh
