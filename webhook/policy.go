package webhook

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cardrail/cardrail"
)

// Resolver looks up a host's addresses (*net.Resolver implements it).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// reach is which addresses a delivery may connect to.
type reach int

const (
	// reachPublic is production's: public unicast addresses only.
	reachPublic reach = iota
	// reachLoopback is sandbox's: public addresses and this host's
	// loopback (a receiver in local development), but no other private
	// network, so a sandbox operator cannot aim the server inside it.
	reachLoopback
	// reachPrivate adds every private network, in either mode, when
	// CARDRAIL_WEBHOOK_ALLOW_PRIVATE is set (a receiver in the same
	// container network, for one).
	reachPrivate
)

// neverReachable holds the ranges no webhook may reach: link-local
// (including the cloud metadata address 169.254.169.254), unspecified,
// multicast and broadcast. None is a legitimate receiver.
var neverReachable = prefixes(
	"0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
	"::/128", "fe80::/10", "ff00::/8",
)

// nonPublic holds the ranges only reachPrivate may reach: private,
// loopback, carrier-grade NAT, and the special-purpose and documentation
// ranges that never route to a public receiver.
var nonPublic = prefixes(
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "100.64.0.0/10",
	"192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
	"::1/128", "fc00::/7", "fec0::/10", "100::/64", "2001:db8::/32",
	// Translation ranges embed IPv4 addresses that may be private; so do
	// the IPv4-compatible (::a.b.c.d) and IPv4-translated
	// (::ffff:0:a.b.c.d) forms, which a host with the old sit tunnel or a
	// SIIT translator routes to the IPv4 address inside.
	"64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96", "::ffff:0:0:0/96",
)

// embedsIPv4 holds the ranges whose addresses carry an IPv4 address in
// their last 32 bits (6to4 carries it in bits 16 to 48, handled apart).
var embedsIPv4 = prefixes("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")

var sixToFour = netip.MustParsePrefix("2002::/16")

// embeddedIPv4 returns the IPv4 address addr carries, if it is of a form
// that carries one. :: and ::1 carry none.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	if !addr.Is6() || addr == netip.IPv6Unspecified() || addr == netip.IPv6Loopback() {
		return netip.Addr{}, false
	}
	b := addr.As16()
	if sixToFour.Contains(addr) {
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	for _, p := range embedsIPv4 {
		if p.Contains(addr) {
			return netip.AddrFrom4([4]byte(b[12:16])), true
		}
	}
	return netip.Addr{}, false
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// refusal says why addr may not be reached under r, or "" when it may.
func (r reach) refusal(addr netip.Addr) string {
	// A zone names an interface of this host, and a prefix never contains
	// a zoned address: unchecked, [fe80::1%eth0] would pass every range.
	if addr.Zone() != "" {
		return fmt.Sprintf("%s names a network interface (a zone); no receiver needs one", addr)
	}
	addr = addr.Unmap()
	for _, p := range neverReachable {
		if p.Contains(addr) {
			return fmt.Sprintf("%s is a link-local, multicast or unspecified address", addr)
		}
	}
	if v4, ok := embeddedIPv4(addr); ok {
		for _, p := range neverReachable {
			if p.Contains(v4) {
				return fmt.Sprintf("%s carries %s, a link-local, multicast or unspecified address", addr, v4)
			}
		}
	}
	if r == reachLoopback && addr.IsLoopback() {
		return ""
	}
	if r != reachPrivate {
		for _, p := range nonPublic {
			if p.Contains(addr) {
				return fmt.Sprintf("%s is not a public address", addr)
			}
		}
	}
	return ""
}

// reachFor is the reach of an endpoint in a mode.
func (w *Worker) reachFor(livemode bool) reach {
	switch {
	case w.opts.AllowPrivate:
		return reachPrivate
	case livemode:
		return reachPublic
	}
	return reachLoopback
}

const maxURLLength = 2048

// checkURL applies the registration policy to raw: http or https without
// credentials; production endpoints https only, sandbox ones plain http
// only on loopback; and, after resolving the host, only addresses the mode
// may reach. Every refusal is a
// webhook_url_refused error saying why.
func (w *Worker) checkURL(ctx context.Context, raw string, livemode bool) error {
	refuse := func(format string, args ...any) error {
		e := cardrail.Errorf(cardrail.CodeWebhookURLRefused, format, args...)
		e.Fields = []cardrail.FieldError{{Field: "url", Message: e.Message}}
		return e
	}
	if len(raw) > maxURLLength {
		return refuse("The URL is longer than %d characters.", maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return refuse("The URL cannot be parsed.")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return refuse("The URL must be http or https.")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return refuse("The URL must name a host.")
	}
	if u.User != nil {
		return refuse("The URL must not carry credentials.")
	}
	// url.Parse takes any digits as a port; one that could never be
	// dialed would fail every delivery until the retries ran out.
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return refuse("The URL's port must be from 1 to 65535.")
		}
	}
	if livemode && scheme != "https" {
		return refuse("Production endpoints must use https.")
	}
	r := w.reachFor(livemode)
	// Sandbox may use plain http for a receiver on this host only.
	plainHTTP := scheme == "http" && r == reachLoopback
	const httpLoopbackOnly = "Sandbox endpoints may use plain http on loopback only; use https, or set CARDRAIL_WEBHOOK_ALLOW_PRIVATE=true."
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if why := r.refusal(addr); why != "" {
			return refuse("The URL's host is refused: %s.", why)
		}
		if plainHTTP && !addr.Unmap().IsLoopback() {
			return refuse(httpLoopbackOnly)
		}
		return nil
	}
	lookup, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := w.opts.Resolver.LookupNetIP(lookup, "ip", host)
	if err != nil || len(addrs) == 0 {
		if livemode || plainHTTP {
			return refuse("The URL's host %q does not resolve.", host)
		}
		// A sandbox endpoint may name a host that only resolves where the
		// developer runs; the connect-time check still applies.
		return nil
	}
	for _, a := range addrs {
		if plainHTTP && !a.Unmap().IsLoopback() {
			return refuse(httpLoopbackOnly)
		}
		if why := r.refusal(a); why != "" {
			return refuse("The URL's host %q resolves to a refused address: %s.", host, why)
		}
	}
	return nil
}

// newClient returns an HTTP client that checks every address it connects
// to against r after DNS resolution (so a name re-pointed at a private
// address after registration is still refused), never uses a proxy (which
// would connect on its behalf), and never follows redirects.
func newClient(r reach) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook: refused to connect to %q", address)
			}
			if why := r.refusal(ap.Addr()); why != "" {
				return fmt.Errorf("webhook: refused to connect: %s", why)
			}
			return nil
		}}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: noRedirects}
}

// noRedirects makes the client return a 3xx as the answer, which counts as
// a failed attempt: following it could lead anywhere.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
