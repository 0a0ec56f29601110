package issuing

import (
	"context"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

func validateMoney(amount int64, currency string, currencyRequired bool) []cardrail.FieldError {
	var errs []cardrail.FieldError
	if !cardrail.ValidAmount(amount) {
		errs = append(errs, cardrail.FieldError{Field: "amount", Message: cardrail.AmountRange})
	}
	if (currencyRequired || currency != "") && !cardrail.ValidCurrency(currency) {
		errs = append(errs, cardrail.FieldError{Field: "currency", Message: "must be an uppercase ISO 4217 currency code Cardrail supports"})
	}
	return errs
}

// Wallets lists the caller's wallets.
func (s *Service) Wallets(ctx context.Context, c cardrail.Caller) ([]cardrail.Wallet, error) {
	return s.store.Wallets(ctx, c.Livemode, c.Subject)
}

// Deposit is the sandbox top-up of the caller's own wallet.
func (s *Service) Deposit(ctx context.Context, c cardrail.Caller, subject string, amount int64, currency string) (*cardrail.Wallet, error) {
	return s.deposit(ctx, c, subject, amount, currency, false)
}

// ownedWallet is a wallet as an audit record shows it, with its owner.
type ownedWallet struct {
	*cardrail.Wallet
	Owner string `json:"owner"`
}

// deposit credits a wallet from the mode's funding account, auditing it
// when an operator does it.
func (s *Service) deposit(ctx context.Context, c cardrail.Caller, subject string, amount int64, currency string, audited bool) (*cardrail.Wallet, error) {
	if errs := validateMoney(amount, currency, true); len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	var out *cardrail.Wallet
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		w, err := tx.Wallet(ctx, c.Livemode, subject, currency)
		if err != nil {
			return err
		}
		before := *w
		e := ledger.Move(ledger.TypeDeposit, c.Livemode, currency, ledger.SystemAccount(c.Livemode, currency, ledger.Funding), w.Reference, amount)
		if err := tx.Post(ctx, &e); err != nil {
			return err
		}
		if out, err = tx.Wallet(ctx, c.Livemode, subject, currency); err != nil {
			return err
		}
		if audited {
			// The wallet's owner is in the record: nothing an operator
			// can read maps a wallet reference back to its user.
			if err := s.audit(ctx, tx, c, "wallet.credited", out.Reference, ownedWallet{&before, subject}, ownedWallet{out, subject}); err != nil {
				return err
			}
		}
		return s.emit(ctx, tx, cardrail.EventWalletCredited, c.Livemode, out.Reference, out)
	})
	return out, cardrail.WithOp("wallets.Deposit", err)
}

// lockMovableCard locks one of the caller's cards for a wallet transfer:
// the card must be active or frozen, and a currency given must be the
// card's. verb completes "only active or frozen cards can be …".
func (s *Service) lockMovableCard(ctx context.Context, tx cardrail.Tx, c cardrail.Caller, ref, currency, verb string) (*cardrail.Card, error) {
	card, err := s.lockCard(ctx, tx, c, ref, false)
	if err != nil {
		return nil, err
	}
	if !card.Status.CanMoveMoney() {
		return nil, cardrail.Errorf(cardrail.CodeInvalidCardState, "Card %s is %s; only active or frozen cards can be %s.", ref, card.Status, verb)
	}
	if currency != "" && currency != card.Currency {
		return nil, cardrail.Errorf(cardrail.CodeCurrencyMismatch, "Card %s is in %s, not %s.", ref, card.Currency, currency)
	}
	return card, nil
}

// Fund moves money from the caller's wallet to the card.
func (s *Service) Fund(ctx context.Context, c cardrail.Caller, ref string, amount int64, currency string) (*cardrail.Card, error) {
	if errs := validateMoney(amount, currency, false); len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	var out *cardrail.Card
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		card, err := s.lockMovableCard(ctx, tx, c, ref, currency, "funded")
		if err != nil {
			return err
		}
		prog, err := tx.Program(ctx, card.Livemode, card.Program)
		if err != nil {
			return err
		}
		if prog.Limits.MaxBalance > 0 {
			total, ok := cardrail.AddAmounts(card.Balance.Available+card.Balance.Held, amount)
			if !ok || total > prog.Limits.MaxBalance {
				return cardrail.Errorf(cardrail.CodeMaxBalanceExceeded, "Funding %s would take the card past its maximum balance of %s.",
					cardrail.Money{Amount: amount, Currency: card.Currency}, cardrail.Money{Amount: prog.Limits.MaxBalance, Currency: card.Currency})
			}
		}
		w, err := tx.Wallet(ctx, card.Livemode, card.Owner, card.Currency)
		if err != nil {
			return err
		}
		e := ledger.Move(ledger.TypeCardFunding, card.Livemode, card.Currency, w.Reference, ledger.CardAvailableAccount(card.Reference), amount)
		e.Card = card.Reference
		if err := tx.Post(ctx, &e); err != nil {
			if _, ok := ledger.IsInsufficientFunds(err); ok {
				return cardrail.Errorf(cardrail.CodeInsufficientWalletFunds, "The %s wallet holds less than %s.",
					card.Currency, cardrail.Money{Amount: amount, Currency: card.Currency})
			}
			return err
		}
		if err := s.emitWallet(ctx, tx, cardrail.EventWalletDebited, card.Livemode, card.Owner, card.Currency); err != nil {
			return err
		}
		card.Balance.Available += amount
		out = card
		return s.emit(ctx, tx, cardrail.EventCardFunded, card.Livemode, card.Reference, card)
	})
	return out, cardrail.WithOp("cards.Fund", err)
}

// Withdraw moves money from the card's available balance to the wallet.
func (s *Service) Withdraw(ctx context.Context, c cardrail.Caller, ref string, amount int64, currency string) (*cardrail.Card, error) {
	if errs := validateMoney(amount, currency, false); len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	var out *cardrail.Card
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		card, err := s.lockMovableCard(ctx, tx, c, ref, currency, "withdrawn from")
		if err != nil {
			return err
		}
		w, err := tx.Wallet(ctx, card.Livemode, card.Owner, card.Currency)
		if err != nil {
			return err
		}
		e := ledger.Move(ledger.TypeCardWithdrawal, card.Livemode, card.Currency, ledger.CardAvailableAccount(card.Reference), w.Reference, amount)
		e.Card = card.Reference
		if err := tx.Post(ctx, &e); err != nil {
			if _, ok := ledger.IsInsufficientFunds(err); ok {
				return cardrail.Errorf(cardrail.CodeInsufficientCardFunds, "Card %s has less than %s available.",
					ref, cardrail.Money{Amount: amount, Currency: card.Currency})
			}
			return err
		}
		card.Balance.Available -= amount
		out = card
		if err := s.emit(ctx, tx, cardrail.EventCardWithdrawn, card.Livemode, card.Reference, card); err != nil {
			return err
		}
		return s.emitWallet(ctx, tx, cardrail.EventWalletCredited, card.Livemode, card.Owner, card.Currency)
	})
	return out, cardrail.WithOp("cards.Withdraw", err)
}

// CardTransactions lists the ledger lines of one of the caller's cards.
func (s *Service) CardTransactions(ctx context.Context, c cardrail.Caller, ref string, p cardrail.ListParams) (cardrail.Page[cardrail.CardTransaction], error) {
	if _, err := s.Card(ctx, c, ref, false); err != nil {
		return cardrail.Page[cardrail.CardTransaction]{}, err
	}
	return s.store.CardTransactions(ctx, c.Livemode, ref, p)
}
