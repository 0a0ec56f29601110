package storetest

import (
	"encoding/json"
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var eventContracts = []contract{
	{"events and audit records commit and roll back with their transaction", testEventsAndAudit},
}

var settingContracts = []contract{
	{"the first writer of a key wins", testSettingFirstWriter},
	{"a missing key is not found", testSettingMissing},
}

func newAudit(target string) *cardrail.AuditRecord {
	return &cardrail.AuditRecord{
		Object:    "audit_record",
		Reference: cardrail.NewReference(cardrail.PrefixAudit),
		Actor:     "op_1",
		Action:    "card.block",
		Target:    target,
		Before:    json.RawMessage(`{"status":"active"}`),
		After:     json.RawMessage(`{"status":"blocked"}`),
		RequestID: cardrail.NewReference(cardrail.PrefixRequest),
		CreatedAt: base,
	}
}

func testEventsAndAudit(t *testing.T, s *sqlstore.Store) {
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	for _, tc := range []struct {
		name   string
		commit bool
		want   int64
	}{
		{"rolled back", false, 0},
		{"committed", true, 1},
		{"rolled back after one committed", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			err := s.Tx(ctx, func(tx cardrail.Tx) error {
				ev, err := cardrail.NewEvent(cardrail.EventCardUpdated, false, c.Reference, c, base)
				if err != nil {
					return err
				}
				if err := tx.InsertEvent(ctx, &ev); err != nil {
					t.Errorf("InsertEvent: %v", err)
					return err
				}
				if err := tx.InsertAudit(ctx, newAudit(c.Reference)); err != nil {
					t.Errorf("InsertAudit: %v", err)
					return err
				}
				if !tc.commit {
					return errAbort
				}
				return nil
			})
			if tc.commit && err != nil {
				t.Fatalf("Tx: %v", err)
			}
			for _, table := range []string{"events", "audit_log"} {
				if got := count(t, s, table); got != tc.want {
					t.Errorf("%s holds %d rows, want %d", table, got, tc.want)
				}
			}
		})
	}
}

func testSettingFirstWriter(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	set := func(key, value string) {
		t.Helper()
		inTx(t, s, func(tx cardrail.Tx) error { return tx.SetSetting(ctx, key, value) })
	}
	set("webhook_secret", "first")
	set("webhook_secret", "second")
	inTx(t, s, func(tx cardrail.Tx) error {
		if err := tx.SetSetting(ctx, "signing_key", "a"); err != nil {
			return err
		}
		return tx.SetSetting(ctx, "signing_key", "b")
	})
	for key, want := range map[string]string{"webhook_secret": "first", "signing_key": "a"} {
		if got, err := s.Setting(ctx, key); err != nil || got != want {
			t.Errorf("Setting(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
}

func testSettingMissing(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	_, err := s.Setting(ctx, "never_set")
	mustNotFind(t, "Setting of a missing key", err)
	inTx(t, s, func(tx cardrail.Tx) error {
		_, err := tx.Setting(ctx, "never_set")
		mustNotFind(t, "Setting of a missing key inside a transaction", err)
		return nil
	})
}
