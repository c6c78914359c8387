//go:build linux

package e2e

import (
	"context"
	"io"
	"net/http"
)

type httpResp = http.Response

func httpGet(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

func readAll(r io.ReadCloser) (string, error) {
	defer r.Close()
	b, err := io.ReadAll(r)
	return string(b), err
}
