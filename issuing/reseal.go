package issuing

import (
	"context"
	"errors"
	"slices"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/seal"
)

// Resealed is what a pass of ResealCards did.
type Resealed struct {
	// Cards is how many numbers were sealed anew under the current key.
	Cards int
	// Unopened counts the numbers sealed under keys the keyring does not
	// hold, by key id: they stay as they are until the key is configured
	// (CARDRAIL_PREVIOUS_ENCRYPTION_KEYS).
	Unopened map[string]int
}

// ResealCards seals every card number stored under a key other than the
// current one anew under the current key, batch transactions of up to
// batch cards, so that after a key rotation the previous key can be
// dropped once a pass leaves nothing under it. Each card's write is
// conditional on the key it was read under, so instances running it at
// once, or a card issued meanwhile, never lose a seal.
func (s *Service) ResealCards(ctx context.Context, batch int) (Resealed, error) {
	out := Resealed{Unopened: map[string]int{}}
	current := s.keys.Current()
	after := ""
	for {
		cards, err := s.store.CardsSealedOutside(ctx, current, after, batch)
		if err != nil || len(cards) == 0 {
			return out, cardrail.WithOp("cards.Reseal", err)
		}
		after = cards[len(cards)-1].Reference
		// next[i] is cards' i-th openable card sealed anew; from[i] the
		// key it was read under.
		next := make([]cardrail.SealedCard, 0, len(cards))
		from := make([]string, 0, len(cards))
		for _, c := range cards {
			aad := []byte(c.Reference)
			pan, err := s.keys.Open(c.KeyID, c.SealedPAN, aad)
			if errors.Is(err, seal.ErrUnknownKey) {
				out.Unopened[c.KeyID]++
				continue
			}
			if err != nil {
				return out, cardrail.WithOp("cards.Reseal", err)
			}
			id, sealed, err := s.keys.Seal(pan, aad)
			clear(pan)
			if err != nil {
				return out, cardrail.WithOp("cards.Reseal", err)
			}
			next = append(next, cardrail.SealedCard{Reference: c.Reference, KeyID: id, SealedPAN: sealed})
			from = append(from, c.KeyID)
		}
		if len(next) > 0 {
			n := 0
			err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
				n = 0
				for i, c := range next {
					done, err := tx.ResealCard(ctx, from[i], c)
					if err != nil {
						return err
					}
					if done {
						n++
					}
				}
				return nil
			})
			if err != nil {
				return out, cardrail.WithOp("cards.Reseal", err)
			}
			out.Cards += n
		}
		if len(cards) < batch {
			return out, nil
		}
	}
}

// UnopenedKeys lists the key ids a pass could not open, sorted.
func (r Resealed) UnopenedKeys() []string {
	ids := make([]string, 0, len(r.Unopened))
	for id := range r.Unopened {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
