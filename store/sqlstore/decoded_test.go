package sqlstore

import (
	"fmt"
	"testing"
)

func TestDecodedControlsAreTheCallersOwn(t *testing.T) {
	text := `{"daily":500,"allowed_mccs":["5411","5812"],"blocked_countries":["KP"]}`
	first, err := spendingControls(text)
	if err != nil {
		t.Fatal(err)
	}
	*first.Daily = 1
	first.AllowedMCCs[0] = "0000"
	first.BlockedCountries = append(first.BlockedCountries, "IR")

	again, err := spendingControls(text)
	if err != nil {
		t.Fatal(err)
	}
	if again.Daily == nil || *again.Daily != 500 {
		t.Fatalf("daily = %v, want 500: a caller's change reached the cache", again.Daily)
	}
	if got := fmt.Sprint(again.AllowedMCCs, again.BlockedCountries); got != "[5411 5812] [KP]" {
		t.Fatalf("lists = %s, want [5411 5812] [KP]", got)
	}
	if again.PerAuthorization != nil || again.Monthly != nil {
		t.Fatalf("absent amounts decoded as %v, %v", again.PerAuthorization, again.Monthly)
	}

	other, err := spendingControls(`{"daily":700}`)
	if err != nil {
		t.Fatal(err)
	}
	if *other.Daily != 700 || other.AllowedMCCs != nil {
		t.Fatalf("a different text answered %+v", other)
	}
	if _, err := spendingControls(`{"daily":"x"}`); err == nil {
		t.Fatal("a malformed text decoded without error")
	}
}

func TestDecodedCacheStopsGrowing(t *testing.T) {
	var c decodedCache[int]
	for i := range maxDecoded + 10 {
		v, err := c.decode(fmt.Sprint(i))
		if err != nil || v != i {
			t.Fatalf("decode(%d) = %d, %v", i, v, err)
		}
	}
	if len(c.m) != maxDecoded {
		t.Fatalf("cache holds %d texts, want at most %d", len(c.m), maxDecoded)
	}
	if v, _ := c.decode(fmt.Sprint(maxDecoded + 5)); v != maxDecoded+5 {
		t.Fatalf("a text past the bound decoded to %d", v)
	}
}
