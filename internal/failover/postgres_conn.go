package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/pgtext"
	"github.com/jackc/pgx/v5/pgconn"
)

// The agent asks the local server over one lasting connection (pgconn,
// the simple query protocol) rather than a psql process per question: the
// monitor asks several times a second, and on a busy host each psql cost
// a fork, an exec and a new backend — hundreds of milliseconds on the
// path of every failover step (measured in the chaos campaign: 0.8 s from
// "promoting" to the promote request, four tools started in a row).
//
// The connection is made as the server's OS user over the Unix socket
// with peer authentication; the agent's own OS user (root) is mapped to it
// in pg_ident.conf (identBegin), the way PostgreSQL lets one OS account
// act as a database role.

const (
	identBegin = "# clusterd begin: this block is rewritten by clusterd"
	identEnd   = "# clusterd end"
	// identMap names the mapping the clusterd block of pg_hba.conf uses.
	identMap = "clusterd"
	// sqlTimeout bounds one question to the local server.
	sqlTimeout = 10 * time.Second
)

// sql runs q on the local server and returns its rows as psql -At would:
// fields joined by '|', rows by newlines, NULL as empty.
func (p *postgres) sql(ctx context.Context, q string) (string, error) {
	p.mu.Lock()
	frozen := p.frozen
	p.mu.Unlock()
	if frozen {
		// It would wait out sqlTimeout for an answer that cannot come.
		return "", fmt.Errorf("asking the local server (%s): it is frozen (fenced until the lease is back)", firstWord(q))
	}
	ctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	p.connMu.Lock()
	defer p.connMu.Unlock()
	var res []*pgconn.Result
	for attempt := 0; ; attempt++ {
		fresh := false
		if p.conn == nil || p.conn.IsClosed() {
			c, err := p.connect(ctx)
			if err != nil {
				return "", err
			}
			p.conn, fresh = c, true
		}
		var err error
		if res, err = p.conn.Exec(ctx, q).ReadAll(); err == nil {
			break
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && !p.conn.IsClosed() {
			return "", fmt.Errorf("asking the local server (%s): %w", firstWord(q), err)
		}
		// Not an answer from the server: the connection is dead (the
		// server restarted since it was made) or the question timed out.
		// Connect afresh; a connection that was not fresh gets one more
		// try (every question the agent asks may be asked twice).
		p.conn.Close(context.Background())
		p.conn = nil
		if fresh || attempt > 0 || ctx.Err() != nil {
			return "", fmt.Errorf("asking the local server (%s): %w", firstWord(q), err)
		}
	}
	return pgtext.Rows(res)
}

// connect opens the lasting connection; a server whose pg_hba.conf does
// not map the agent's user yet (one set up by an earlier release) gets
// the mapping and a reload, once.
func (p *postgres) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=postgres connect_timeout=5 application_name=clusterd",
		p.sockDir, p.rc.Port, p.rc.OSUser))
	if err != nil {
		return nil, err
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	var pe *pgconn.PgError
	if err != nil && errors.As(err, &pe) && strings.HasPrefix(pe.Code, "28") && !p.mapped {
		p.mapped = true
		p.log.Info("mapping the agent's OS user to the server's in pg_ident.conf and reloading", slog.String("user", p.rc.OSUser))
		if werr := p.writeHBA(); werr != nil {
			return nil, errors.Join(err, werr)
		}
		if rerr := p.pgctl(ctx, "reload"); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		c, err = pgconn.ConnectConfig(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to the local server: %w", err)
	}
	return c, nil
}

// closeConn ends the lasting connection (the agent stops).
func (p *postgres) closeConn() {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.conn.Close(ctx)
		p.conn = nil
	}
}

// Close ends the agent's connection to the server (not the server).
func (p *postgres) Close() error {
	p.closeConn()
	return nil
}

func firstWord(q string) string {
	w, _, _ := strings.Cut(strings.TrimSpace(q), " ")
	return w
}

// agentUser is the OS user the agent runs as, for pg_ident.conf.
func agentUser() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("finding the agent's OS user: %w", err)
	}
	return u.Username, nil
}

// writeIdent maps the agent's OS user (and the server's own) to the
// server's role in pg_ident.conf, in a block clusterd rewrites.
func (p *postgres) writeIdent() error {
	me, err := agentUser()
	if err != nil {
		return err
	}
	return p.writeBlock("pg_ident.conf", identBegin, identEnd,
		fmt.Sprintf("%[1]s %[2]s %[3]s\n%[1]s %[3]s %[3]s\n", identMap, me, p.rc.OSUser))
}
