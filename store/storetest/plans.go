package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/webhook"
)

// Explain returns the database's plan for query with args, on conn.
type Explain func(ctx context.Context, conn sqlstore.Conn, query string, args []any) (string, error)

// planConn passes every query on to its Conn, and first records how the
// database plans it.
type planConn struct {
	sqlstore.Conn
	explain Explain
	plans   []string
}

func (c *planConn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	plan, err := c.explain(ctx, c.Conn, query, args)
	if err != nil {
		return nil, fmt.Errorf("explain %s: %w", query, err)
	}
	c.plans = append(c.plans, plan)
	return c.Conn.Query(ctx, query, args...)
}

func (c *planConn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	plan, err := c.explain(ctx, c.Conn, query, args)
	if err != nil {
		return errRow{fmt.Errorf("explain %s: %w", query, err)}
	}
	c.plans = append(c.plans, plan)
	return c.Conn.QueryRow(ctx, query, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// IndexedLists checks that each list that would otherwise read a whole
// large table can be answered from the index added for it: the operator
// API's events by type and by object and its failed webhook deliveries,
// the metrics' count of pending deliveries, and the expiry job's open
// cards past their month. An index dropped, or
// a query changed so that the database may no longer use its index (a
// partial index needs its condition repeated), fails here. The tables are
// small, so the database would rather read them whole: explain must plan
// as if sequential scans cost too much (PostgreSQL's write transactions
// already do).
func IndexedLists(t *testing.T, open func(t *testing.T) *sqlstore.Store, d sqlstore.Dialect, explain Explain) {
	ctx := t.Context()
	conn := &planConn{Conn: open(t).Conn(), explain: explain}
	s := sqlstore.New(conn, d)
	page := cardrail.ListParams{Limit: 10}
	lists := []struct {
		name string
		// indexes are the indexes that may answer it, any one of them.
		indexes []string
		list    func() error
	}{
		{"events of one type", []string{"events_by_type"}, func() error {
			_, err := s.Events(ctx, cardrail.EventFilter{Type: cardrail.EventCardFrozen, ListParams: page})
			return err
		}},
		{"events of one object", []string{"events_by_object"}, func() error {
			_, err := s.Events(ctx, cardrail.EventFilter{Object: "card_01", ListParams: page})
			return err
		}},
		{"failed webhook deliveries", []string{"webhook_deliveries_by_status"}, func() error {
			_, err := s.WebhookDeliveries(ctx, webhook.DeliveryFilter{Status: webhook.DeliveryFailed, ListParams: page})
			return err
		}},
		// Either the (livemode, status) index or a partial index on the
		// pending deliveries reads the pending ones only; PostgreSQL's
		// generic plan takes the latter and checks the mode row by row.
		{"pending webhook deliveries counted", []string{"webhook_deliveries_by_status", "webhook_deliveries_in_order"}, func() error {
			_, err := s.PendingWebhookDeliveries(ctx, false)
			return err
		}},
		{"cards past their expiry month", []string{"cards_by_expiry"}, func() error {
			_, err := s.ExpiredCards(ctx, 2026, 11, 100)
			return err
		}},
	}
	for _, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			conn.plans = nil
			if err := l.list(); err != nil {
				t.Fatal(err)
			}
			if len(conn.plans) != 1 {
				t.Fatalf("want one query, got %d", len(conn.plans))
			}
			if !slices.ContainsFunc(l.indexes, func(index string) bool { return strings.Contains(conn.plans[0], index) }) {
				t.Errorf("planned without %s:\n%s", strings.Join(l.indexes, " or "), conn.plans[0])
			}
		})
	}
}
