package pgtext

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRows(t *testing.T) {
	res := []*pgconn.Result{
		{Rows: [][][]byte{{[]byte("1"), nil, []byte("t"), []byte("a b")}}},
		{Rows: [][][]byte{{[]byte("x")}, {[]byte("y")}}},
		{},
	}
	if got, err := Rows(res); err != nil || got != "1||t|a b\nx\ny" {
		t.Fatalf("%q, %v", got, err)
	}
	bad := errors.New("42703")
	if _, err := Rows([]*pgconn.Result{{Rows: [][][]byte{{[]byte("1")}}}, {Err: bad}}); !errors.Is(err, bad) {
		t.Fatalf("a result's error: %v", err)
	}
}
