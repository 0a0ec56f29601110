package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var authorizeType = reflect.TypeOf(&authorizeRequest{})

// FuzzExactFields walks any valid JSON without panicking or running past
// the body, and whatever it accepts for the authorization request names
// only the request's fields, each once. go test runs the seeds; run longer
// with go test -fuzz FuzzExactFields ./api/.
func FuzzExactFields(f *testing.F) {
	for _, s := range []string{
		`{"amount":1,"currency":"USD","merchant":{"name":"Bench Store","mcc":"5411","country":"US"}}`,
		`{"amount":1,"Amount":2}`,
		`{"\u0061mount":1}`,
		`{"merchant":{"name":"a\"b\\","city":null},"x":[1,{"y":[]}]}`,
		`  [ {"a" : 1} , "}" ]  `,
		`"str"`, `12e3`, `null`, `{}`, `{"metadata":{"a":"1","a":"2"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		err := exactFields(body, authorizeType)
		var top map[string]json.RawMessage
		if err != nil || json.Unmarshal(body, &top) != nil {
			return
		}
		fields := fieldsOf(authorizeType.Elem())
		for k := range top {
			if _, ok := fields[k]; !ok {
				t.Fatalf("accepted the key %q in %s", k, body)
			}
		}
	})
}

func TestExactFields(t *testing.T) {
	for body, want := range map[string]string{
		`{"amount":1,"currency":"USD","merchant":{"name":"n","mcc":"5411","country":"US"}}`: "",
		` { "amount" : 1 , "merchant" : { "city" : "x" } } `:                                "",
		`{"\u0061mount":1}`:                      "",
		`{"Amount":1}`:                           "Amount",
		`{"amount":1,"amount":2}`:                "amount",
		`{"merchant":{"Mcc":"5411"}}`:            "merchant.Mcc",
		`{"merchant":{"name":"a\"}","zip":"1"}}`: "merchant.zip",
		`{"merchant":{"name":"a\u0000b"}}`:       "merchant.name: must not contain the NUL",
		`{"currency":"US\u0000"}`:                "currency: must not contain the NUL",
		`{"merchant":{"na\u0000me":"x"}}`:        "must not contain the NUL",
		`{"merchant":{"name":"a\\u0000b"}}`:      "",
	} {
		err := exactFields([]byte(body), authorizeType)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want a problem with %q", body, err, want)
		}
	}
	// A large object's keys are checked for repetition past the first 16.
	keys := func(n int, repeat string) string {
		var b strings.Builder
		b.WriteString(`{"program":"p","metadata":{`)
		for i := range n {
			fmt.Fprintf(&b, `"k%d":"v",`, i)
		}
		b.WriteString(`"` + repeat + `":"v"}}`)
		return b.String()
	}
	cardType := reflect.TypeOf(&createCardRequest{})
	for _, repeat := range []string{"k3", "k20"} {
		if err := exactFields([]byte(keys(25, repeat)), cardType); err == nil || !strings.Contains(err.Error(), "metadata."+repeat) {
			t.Errorf("metadata repeating %s: %v", repeat, err)
		}
	}
	if err := exactFields([]byte(keys(25, "k99")), cardType); err != nil {
		t.Errorf("26 distinct metadata keys: %v", err)
	}
	if err := exactFields([]byte(`{"program":"p","metadata":{"k":"v\u0000"}}`), cardType); err == nil || !strings.Contains(err.Error(), "metadata.k: must not contain the NUL") {
		t.Errorf("metadata value with NUL: %v", err)
	}
}

func BenchmarkExactFields(b *testing.B) {
	body := []byte(`{"amount":1,"currency":"USD","merchant":{"name":"Bench Store","mcc":"5411","country":"US"}}`)
	for b.Loop() {
		if err := exactFields(body, authorizeType); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLoneSurrogate(t *testing.T) {
	for body, want := range map[string]string{
		`{"name":"plain"}`:               "",
		`{"name":"Sh\ud800op"}`:          `\ud800`,
		`{"name":"Sh\udc00op"}`:          `\udc00`,
		`{"name":"\ud83d\ude00"}`:        "", // a pair: U+1F600
		`{"name":"\uD83D\uDE00"}`:        "", // hex in either case
		`{"name":"\ud83d\u0041"}`:        `\ud83d`,
		`{"name":"\ude00\ud83d"}`:        `\ude00`, // low before high
		`{"name":"end\ud83d"}`:           `\ud83d`,
		`{"name":"\\ud800"}`:             "", // an escaped backslash, then text
		`{"name":"\"\ud800"}`:            `\ud800`,
		`{"name":"\u00e9\u20ac"}`:        "",
		`{"a":"x","\udfff":"key"}`:       `\udfff`, // keys are strings too
		`{"name":"é","note":"\\\ud800"}`: `\ud800`,
	} {
		got, lone := loneSurrogate([]byte(body))
		if got != want || lone != (want != "") {
			t.Errorf("%s: got %q %v, want %q", body, got, lone, want)
		}
	}
}

// FuzzLoneSurrogate: on valid UTF-8 JSON, encoding/json invents a U+FFFD
// exactly when loneSurrogate finds an escape. go test runs the seeds; run
// longer with go test -fuzz FuzzLoneSurrogate ./api/.
func FuzzLoneSurrogate(f *testing.F) {
	for _, s := range []string{`{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `["\\ud800","\udc00x"]`, `"\ud800\ud800"`, `{"\"":"\u0041"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v any
		if !utf8.ValidString(body) || strings.Contains(body, "\ufffd") || strings.Contains(strings.ToLower(body), `\ufffd`) || json.Unmarshal([]byte(body), &v) != nil {
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		invented := strings.Contains(string(out), "\ufffd")
		if _, lone := loneSurrogate([]byte(body)); lone != invented {
			t.Fatalf("%q: loneSurrogate %v, decoder invented U+FFFD %v", body, lone, invented)
		}
	})
}
