package storetest

import (
	"fmt"
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/webhook"
)

var webhookContracts = []contract{
	{"pending deliveries are counted by mode", testPendingWebhookDeliveries},
}

func testPendingWebhookDeliveries(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	count := func(livemode bool) int64 {
		t.Helper()
		n, err := s.PendingWebhookDeliveries(ctx, livemode)
		if err != nil {
			t.Fatalf("PendingWebhookDeliveries(%v): %v", livemode, err)
		}
		return n
	}
	if sandbox, live := count(false), count(true); sandbox != 0 || live != 0 {
		t.Fatalf("empty database: %d sandbox, %d live pending; want none", sandbox, live)
	}
	seq := int64(0)
	queue := func(livemode bool, status webhook.DeliveryStatus) {
		t.Helper()
		seq++
		at := now()
		d := &webhook.Delivery{Reference: cardrail.NewReference(cardrail.PrefixDelivery), Endpoint: "we_contract",
			Event: fmt.Sprint("evt_", seq), EventType: cardrail.EventCardCreated, ObjectRef: fmt.Sprint("card_", seq),
			EventSeq: seq, Status: status, NextAttemptAt: &at, Livemode: livemode, CreatedAt: at, UpdatedAt: at}
		if err := s.WebhookTx(ctx, func(tx webhook.Tx) error { return tx.InsertWebhookDelivery(ctx, d) }); err != nil {
			t.Fatalf("queue delivery: %v", err)
		}
	}
	for range 3 {
		queue(false, webhook.DeliveryPending)
	}
	queue(false, webhook.DeliveryDelivered)
	queue(false, webhook.DeliveryFailed)
	queue(true, webhook.DeliveryPending)
	queue(true, webhook.DeliveryDelivered)
	if sandbox, live := count(false), count(true); sandbox != 3 || live != 1 {
		t.Errorf("%d sandbox, %d live pending; want 3 and 1 (delivered and failed ones are not pending)", sandbox, live)
	}
}
