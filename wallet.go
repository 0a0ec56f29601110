package cardrail

import "time"

// Wallet is a caller's balance in one currency and mode, held by the platform
// and moved to and from cards.
type Wallet struct {
	Object    string        `json:"object"`
	Reference string        `json:"reference"`
	Currency  string        `json:"currency"`
	Balance   WalletBalance `json:"balance"`
	Livemode  bool          `json:"livemode"`
	CreatedAt time.Time     `json:"created_at"`

	Owner string `json:"-"`
}

// WalletBalance is what a wallet can spend.
type WalletBalance struct {
	Available int64 `json:"available"`
}

// CardTransaction is one ledger line on a card's accounts, as the card's
// statement shows it. Account says which of the card's balances moved.
type CardTransaction struct {
	Object        string    `json:"object"`
	Reference     string    `json:"reference"`
	Type          string    `json:"type"`
	Account       string    `json:"account"`
	Amount        int64     `json:"amount"`
	BalanceAfter  int64     `json:"balance_after"`
	Currency      string    `json:"currency"`
	Authorization *string   `json:"authorization"`
	Dispute       *string   `json:"dispute"`
	Livemode      bool      `json:"livemode"`
	CreatedAt     time.Time `json:"created_at"`
}

// Cardholder is what operators set about a subject, overriding token claims.
type Cardholder struct {
	Subject   string    `json:"subject"`
	KYC       string    `json:"kyc"`
	Livemode  bool      `json:"livemode"`
	UpdatedAt time.Time `json:"updated_at"`
}
