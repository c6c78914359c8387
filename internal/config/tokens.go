package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// MinTokenLen is the shortest console token accepted: 128 bits as hex.
const MinTokenLen = 32

// ReadTokens reads the console's tokens file: one "NAME TOKEN" per line
// (blank lines and #-comments ignored), NAME being who the console's
// operator events name. Like the key file it must not be readable by
// other users.
func ReadTokens(path string) (map[string]string, []KeyFileError) {
	data, problems, ok := readSecret("tokens file", path, fmt.Sprintf("add a line with: echo \"$USER $(openssl rand -hex 24)\" >> %s; chmod 600 %s", path, path))
	if !ok {
		return nil, problems
	}
	toks, more := parseTokens(data)
	problems = append(problems, more...)
	if len(toks) == 0 && len(problems) == 0 {
		problems = append(problems, KeyFileError{0, "tokens file holds no token; add a line NAME TOKEN, e.g.: echo \"$USER $(openssl rand -hex 24)\" >> " + path})
	}
	return toks, problems
}

func parseTokens(data []byte) (map[string]string, []KeyFileError) {
	toks := map[string]string{}
	names := map[string]bool{}
	var problems []KeyFileError
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 64*1024)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		switch {
		case len(f) != 2:
			problems = append(problems, KeyFileError{line, "want NAME TOKEN"})
		case !nameRE.MatchString(f[0]):
			problems = append(problems, KeyFileError{line, fmt.Sprintf("%q: a name uses letters, digits, '.', '_' or '-' (at most 63)", f[0])})
		case len(f[1]) < MinTokenLen || len(f[1]) > 256 || !printable(f[1]):
			problems = append(problems, KeyFileError{line, fmt.Sprintf("the token of %s must be %d to 256 printable characters (openssl rand -hex 24 makes one)", f[0], MinTokenLen)})
		case names[f[0]]:
			problems = append(problems, KeyFileError{line, fmt.Sprintf("%s is listed twice", f[0])})
		case toks[f[1]] != "":
			problems = append(problems, KeyFileError{line, fmt.Sprintf("%s has the same token as %s: give each operator their own", f[0], toks[f[1]])})
		default:
			toks[f[1]], names[f[0]] = f[0], true
		}
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, KeyFileError{line + 1, fmt.Sprintf("reading: %v", err)})
	}
	return toks, problems
}

func printable(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}
