package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cardrail/cardrail/webhook"
)

// A receiver checks every delivery before trusting it. Verify does so (and
// refuses stale timestamps); the ten lines in the middle are the same check
// with nothing but the standard library, for receivers not written with this
// package.
func ExampleVerify() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwTlYqq7Y8l0A="
	body := []byte(`{"id":"evt_01jd7x3k9q2m4n8p6r5s1t0v2w","object":"event","type":"card.created"}`)
	h := http.Header{}
	h.Set("webhook-id", "evt_01jd7x3k9q2m4n8p6r5s1t0v2w")
	h.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	sig, _ := webhook.Sign(secret, h.Get("webhook-id"), time.Now().Unix(), body)
	h.Set("webhook-signature", sig) // as Cardrail sends it

	// Verify "v1,<base64 HMAC-SHA256 of id.timestamp.body>" by hand:
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "."))
	mac.Write(body)
	expected := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	valid := false
	for _, s := range strings.Fields(h.Get("webhook-signature")) {
		valid = valid || hmac.Equal([]byte(s), []byte(expected))
	}
	fmt.Println("by hand:", valid)

	fmt.Println("Verify:", webhook.Verify(secret, h, body, time.Now()) == nil)
	fmt.Println("tampered:", webhook.Verify(secret, h, append(body, ' '), time.Now()) == nil)
	// Output:
	// by hand: true
	// Verify: true
	// tampered: false
}
