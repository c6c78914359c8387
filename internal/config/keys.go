package config

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// KeySize is the length of a cluster key: AES-256.
const KeySize = 32

// NewKey returns a new random cluster key in its file form: standard padded
// base64 of 32 bytes and a newline.
func NewKey() (string, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b) + "\n", nil
}

// KeyFileError is a problem in a key file, at a line of that file (0: the
// file as a whole).
type KeyFileError struct {
	Line int
	Msg  string
}

// ReadKeys reads a key file: one base64 key per line, blank lines and
// #-comments ignored. The first key encrypts, all of them decrypt, which is
// what lets a key be rotated across a running cluster.
func ReadKeys(path string) ([][]byte, []KeyFileError) {
	data, problems, ok := readSecret("key file", path, "create one with: clusterd keygen --out "+path)
	if !ok {
		return nil, problems
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) != KeySize {
			problems = append(problems, KeyFileError{line, fmt.Sprintf("not a cluster key (want standard base64 of %d bytes, as clusterd keygen writes)", KeySize)})
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 && len(problems) == 0 {
		problems = append(problems, KeyFileError{0, "key file holds no key; create one with: clusterd keygen --out " + path})
	}
	return keys, problems
}

// readSecret reads a secret file (the key file, the console's tokens):
// its contents, the problems found (it is exposed to others; it cannot be
// read, with how to make one), and whether it was read.
func readSecret(kind, path, howToMake string) ([]byte, []KeyFileError, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, []KeyFileError{{0, fmt.Sprintf("cannot read %s: %v (%s)", kind, err, howToMake)}}, false
	}
	var problems []KeyFileError
	if why := exposed(path, st); why != "" {
		problems = append(problems, KeyFileError{0, fmt.Sprintf("%s %s %s", kind, path, why)})
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, append(problems, KeyFileError{0, fmt.Sprintf("cannot read %s: %v", kind, err)}), false
	}
	return data, problems, true
}
