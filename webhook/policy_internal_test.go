package webhook

import (
	"net/netip"
	"testing"
)

// TestAddressPolicy pins which addresses each kind of endpoint may reach.
func TestAddressPolicy(t *testing.T) {
	cases := []struct {
		addr            string
		public, private bool // reachable under reachPublic, reachPrivate
	}{
		{"93.184.216.34", true, true},
		{"2606:2800:220:1:248:1893:25c8:1946", true, true},
		{"10.0.0.1", false, true},
		{"172.16.5.4", false, true},
		{"172.32.0.1", true, true},
		{"192.168.1.1", false, true},
		{"127.0.0.1", false, true},
		{"::1", false, true},
		{"fd00::1", false, true},
		{"100.64.0.1", false, true},
		{"100.128.0.1", true, true},
		{"::ffff:10.0.0.1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"64:ff9b::a00:1", false, true},
		{"169.254.169.254", false, false},
		{"169.254.1.1", false, false},
		{"fe80::1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
		{"::ffff:169.254.169.254", false, false},
		// A zone names an interface; prefixes never contain a zoned
		// address, so unchecked these passed every range.
		{"::1%lo", false, false},
		{"fd00::2%eth0", false, false},
		{"fe80::fc:ff:fe00:1%eth0", false, false},
		{"2606:2800:220:1:248:1893:25c8:1946%eth0", false, false},
		// IPv4-compatible, IPv4-translated, NAT64 and 6to4 forms carry an
		// IPv4 address: never public, and never the metadata address.
		{"::127.0.0.1", false, true},
		{"::10.0.0.1", false, true},
		{"::ffff:0:127.0.0.1", false, true},
		{"::ffff:0:10.0.0.1", false, true},
		{"::a9fe:a9fe", false, false},
		{"::ffff:0:169.254.169.254", false, false},
		{"64:ff9b::169.254.169.254", false, false},
		{"2002:a9fe:a9fe::1", false, false},
		{"2002:5db8:d822::1", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if got := reachPublic.refusal(a) == ""; got != tc.public {
				t.Errorf("production reachable = %v, want %v (%s)", got, tc.public, reachPublic.refusal(a))
			}
			if got := reachPrivate.refusal(a) == ""; got != tc.private {
				t.Errorf("with private networks allowed, reachable = %v, want %v (%s)", got, tc.private, reachPrivate.refusal(a))
			}
			// Sandbox: what production reaches, plus this host's loopback.
			loopback := map[string]bool{"127.0.0.1": true, "::1": true, "::ffff:127.0.0.1": true}[tc.addr]
			if got, want := reachLoopback.refusal(a) == "", tc.public || loopback; got != want {
				t.Errorf("sandbox reachable = %v, want %v (%s)", got, want, reachLoopback.refusal(a))
			}
		})
	}
}

// TestReachByMode: sandbox reaches loopback but no other private network
// unless private networks are allowed, which opens them to both modes.
func TestReachByMode(t *testing.T) {
	for _, tc := range []struct {
		allowPrivate, livemode bool
		want                   reach
	}{
		{false, false, reachLoopback},
		{false, true, reachPublic},
		{true, false, reachPrivate},
		{true, true, reachPrivate},
	} {
		w := &Worker{opts: Options{AllowPrivate: tc.allowPrivate}}
		if got := w.reachFor(tc.livemode); got != tc.want {
			t.Errorf("allow private %v, livemode %v: reach %d, want %d", tc.allowPrivate, tc.livemode, got, tc.want)
		}
	}
}
