// Package pgtext prints query results as psql -At does: the agent and the
// chaos campaign's writers read answers in that form.
package pgtext

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Rows joins the rows of every result by newlines and their columns by
// "|", trimmed of surrounding space; the first result's error, if any, is
// returned instead.
func Rows(res []*pgconn.Result) (string, error) {
	var b strings.Builder
	for _, r := range res {
		if r.Err != nil {
			return "", r.Err
		}
		for _, row := range r.Rows {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			for i, v := range row {
				if i > 0 {
					b.WriteByte('|')
				}
				b.Write(v)
			}
		}
	}
	return strings.TrimSpace(b.String()), nil
}
