package seal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/seal"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	return k
}

func oneKeyring(t *testing.T) (*seal.Keyring, string) {
	t.Helper()
	key := newKey(t)
	id := seal.KeyID(key)
	kr, err := seal.NewKeyring(id, map[string][]byte{id: key})
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr, id
}

func TestSealOpen(t *testing.T) {
	pan := []byte("4000001234567899")
	aad := []byte("card_01jd0000000000000000000000")

	t.Run("round-trips under the current key", func(t *testing.T) {
		kr, id := oneKeyring(t)
		gotID, sealed, err := kr.Seal(pan, aad)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if gotID != id {
			t.Errorf("Seal key id = %q, want %q", gotID, id)
		}
		if bytes.Contains(sealed, pan) {
			t.Error("sealed value contains the plaintext PAN")
		}
		got, err := kr.Open(gotID, sealed, aad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pan) {
			t.Errorf("Open = %q, want %q", got, pan)
		}
	})

	t.Run("seals the same PAN differently each time", func(t *testing.T) {
		kr, _ := oneKeyring(t)
		_, a, _ := kr.Seal(pan, aad)
		_, b, _ := kr.Seal(pan, aad)
		if bytes.Equal(a, b) {
			t.Error("two seals of the same PAN are identical; nonce is not random")
		}
	})

	kr, id := oneKeyring(t)
	_, sealed, err := kr.Seal(pan, aad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	for _, tc := range []struct {
		name    string
		keyID   string
		sealed  []byte
		aad     []byte
		wantErr error
	}{
		{"refuses another card's reference", id, sealed, []byte("card_01jdffffffffffffffffffffff"), seal.ErrOpen},
		{"refuses missing aad", id, sealed, nil, seal.ErrOpen},
		{"refuses a flipped nonce bit", id, flip(0), aad, seal.ErrOpen},
		{"refuses a flipped ciphertext bit", id, flip(14), aad, seal.ErrOpen},
		{"refuses a flipped tag bit", id, flip(len(sealed) - 1), aad, seal.ErrOpen},
		{"refuses a truncated value", id, sealed[:len(sealed)-1], aad, seal.ErrOpen},
		{"refuses a value shorter than the nonce", id, sealed[:5], aad, seal.ErrOpen},
		{"refuses an empty value", id, nil, aad, seal.ErrOpen},
		{"refuses an unknown key id", "deadbeef", sealed, aad, seal.ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kr.Open(tc.keyID, tc.sealed, tc.aad)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tc.wantErr)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q alongside an error", got)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	pan := []byte("5500001234567890")
	aad := []byte("card_01jd1111111111111111111111")
	oldKey, newKey := newKey(t), newKey(t)
	oldID, newID := seal.KeyID(oldKey), seal.KeyID(newKey)

	before, err := seal.NewKeyring(oldID, map[string][]byte{oldID: oldKey})
	if err != nil {
		t.Fatal(err)
	}
	sealedID, sealed, err := before.Seal(pan, aad)
	if err != nil {
		t.Fatal(err)
	}

	after, err := seal.NewKeyring(newID, map[string][]byte{oldID: oldKey, newID: newKey})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("opens values sealed under the previous key", func(t *testing.T) {
		got, err := after.Open(sealedID, sealed, aad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pan) {
			t.Errorf("Open = %q, want %q", got, pan)
		}
	})

	t.Run("seals new values under the new key", func(t *testing.T) {
		id, resealed, err := after.Seal(pan, aad)
		if err != nil {
			t.Fatal(err)
		}
		if id != newID {
			t.Errorf("Seal key id = %q, want the new key %q", id, newID)
		}
		if _, err := before.Open(id, resealed, aad); !errors.Is(err, seal.ErrUnknownKey) {
			t.Errorf("old keyring opened a value sealed under the new key: err = %v", err)
		}
	})

	t.Run("refuses a value relabelled with the wrong key id", func(t *testing.T) {
		if _, err := after.Open(newID, sealed, aad); !errors.Is(err, seal.ErrOpen) {
			t.Errorf("Open error = %v, want ErrOpen", err)
		}
	})

	t.Run("fails clearly once the old key is retired", func(t *testing.T) {
		retired, err := seal.NewKeyring(newID, map[string][]byte{newID: newKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := retired.Open(sealedID, sealed, aad); !errors.Is(err, seal.ErrUnknownKey) {
			t.Errorf("Open error = %v, want ErrUnknownKey", err)
		}
	})
}

func TestNewKeyring(t *testing.T) {
	good := newKey(t)
	for _, tc := range []struct {
		name    string
		current string
		keys    map[string][]byte
		wantErr string
	}{
		{"rejects no keys", "a", nil, "at least one key"},
		{"rejects a current id not in the keyring", "b", map[string][]byte{"a": good}, "not in the keyring"},
		{"rejects a 16-byte key", "a", map[string][]byte{"a": make([]byte, 16)}, "16 bytes, want 32"},
		{"rejects a 31-byte key", "a", map[string][]byte{"a": make([]byte, 31)}, "31 bytes, want 32"},
		{"rejects a 33-byte key", "a", map[string][]byte{"a": make([]byte, 33)}, "33 bytes, want 32"},
		{"rejects a short retired key", "a", map[string][]byte{"a": good, "b": make([]byte, 24)}, "24 bytes"},
		{"rejects an empty key id", "a", map[string][]byte{"a": good, "": good}, "empty key id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := seal.NewKeyring(tc.current, tc.keys)
			if err == nil {
				t.Fatalf("NewKeyring succeeded, want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tc.wantErr)
			}
			if kr != nil {
				t.Error("NewKeyring returned a keyring alongside an error")
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	key := newKey(t)
	// Make sure the URL-safe and standard alphabets actually differ for this key.
	key[0], key[1], key[2] = 0xfb, 0xff, 0xbf

	for _, tc := range []struct {
		name string
		in   string
	}{
		{"accepts padded standard base64", base64.StdEncoding.EncodeToString(key)},
		{"accepts unpadded standard base64", base64.RawStdEncoding.EncodeToString(key)},
		{"accepts padded URL-safe base64", base64.URLEncoding.EncodeToString(key)},
		{"accepts unpadded URL-safe base64", base64.RawURLEncoding.EncodeToString(key)},
		{"ignores a trailing newline", base64.StdEncoding.EncodeToString(key) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := seal.ParseKey(tc.in)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !bytes.Equal(got, key) {
				t.Errorf("ParseKey decoded different bytes")
			}
		})
	}

	secret := "not!base64!but-a-secret-looking-string-xx"
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string
	}{
		{"rejects an empty key", "  ", "empty"},
		{"rejects 16 bytes", base64.StdEncoding.EncodeToString(make([]byte, 16)), "16 bytes, want 32"},
		{"rejects 33 bytes", base64.StdEncoding.EncodeToString(make([]byte, 33)), "33 bytes, want 32"},
		{"rejects text that is not base64", secret, "not valid base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := seal.ParseKey(tc.in)
			if err == nil {
				t.Fatalf("ParseKey succeeded, want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Error("error echoes the key material")
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	a, b := newKey(t), newKey(t)
	t.Run("is stable for a key", func(t *testing.T) {
		if seal.KeyID(a) != seal.KeyID(bytes.Clone(a)) {
			t.Error("KeyID differs for equal keys")
		}
	})
	t.Run("differs between keys", func(t *testing.T) {
		if seal.KeyID(a) == seal.KeyID(b) {
			t.Error("KeyID is equal for different keys")
		}
	})
	t.Run("is eight lowercase hex digits", func(t *testing.T) {
		id := seal.KeyID(a)
		if len(id) != 8 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Errorf("KeyID = %q, want 8 lowercase hex digits", id)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	kr, _ := oneKeyring(t)
	done := make(chan error, 16)
	for i := range 16 {
		go func() {
			aad := []byte{byte(i)}
			id, sealed, err := kr.Seal([]byte("4000001234567899"), aad)
			if err == nil {
				_, err = kr.Open(id, sealed, aad)
			}
			done <- err
		}()
	}
	for range 16 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// The text form round-trips, names its key, and stays bound to its
// associated data.
func TestTextForm(t *testing.T) {
	key := make([]byte, seal.KeySize)
	k, err := seal.NewKeyring(seal.KeyID(key), map[string][]byte{seal.KeyID(key): key})
	if err != nil {
		t.Fatal(err)
	}
	text, err := k.SealText([]byte("whsec_x"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, seal.TextPrefix+seal.KeyID(key)+":") || seal.TextKeyID(text) != seal.KeyID(key) {
		t.Fatalf("text form %q", text)
	}
	if got, err := k.OpenText(text, []byte("a")); err != nil || string(got) != "whsec_x" {
		t.Fatalf("OpenText = %q, %v", got, err)
	}
	if _, err := k.OpenText(text, []byte("b")); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("OpenText with other data: %v, want seal.ErrOpen", err)
	}
	for _, bad := range []string{"whsec_x", "sealed:", "sealed:id", "sealed:id:!!"} {
		if _, err := k.OpenText(bad, []byte("a")); err == nil {
			t.Errorf("OpenText(%q) opened", bad)
		}
		if bad != "sealed:id:!!" && seal.TextKeyID(bad) != "" {
			t.Errorf("seal.TextKeyID(%q) = %q", bad, seal.TextKeyID(bad))
		}
	}
}
