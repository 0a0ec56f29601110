package bench

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWireConn drives the benchmark's HTTP/1.1 client against net/http's
// server: fixed-length and chunked bodies, keep-alive reuse, a server that
// closes, and the request it sends arriving intact.
func TestWireConn(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad headers", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		switch r.URL.Path {
		case "/v1/fixed":
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"status":"pending","echo":` + string(body) + `}`))
		case "/v1/chunked":
			w.WriteHeader(http.StatusOK)
			for i := range 3 {
				w.Write([]byte(strings.Repeat(string(rune('a'+i)), 5000)))
				w.(http.Flusher).Flush()
			}
		case "/v1/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "/v1/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte("bye"))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	addr, prefix, ok := wireTarget(srv.URL + "/v1")
	if !ok || prefix != "/v1" {
		t.Fatalf("wireTarget(%q) = %q, %q, %v", srv.URL+"/v1", addr, prefix, ok)
	}
	if _, _, ok := wireTarget("https://example.com"); ok {
		t.Fatal("wireTarget accepted an https URL")
	}
	c := &wireConn{addr: addr}
	defer c.close()
	body := []byte(`{"amount":1}`)
	for range 3 {
		status, got, err := c.roundTrip(renderPost(addr, prefix+"/fixed", "tok", body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusCreated || string(got) != `{"status":"pending","echo":{"amount":1}}` {
			t.Fatalf("fixed: %d %q", status, got)
		}
	}
	status, got, err := c.roundTrip(renderPost(addr, prefix+"/chunked", "tok", body), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("a", 5000) + strings.Repeat("b", 5000) + strings.Repeat("c", 5000); status != http.StatusOK || string(got) != want {
		t.Fatalf("chunked: %d, %d bytes", status, len(got))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for four requests on one keep-alive connection", n)
	}
	status, got, err = c.roundTrip(renderPost(addr, prefix+"/close", "tok", body), 5*time.Second)
	if err != nil || status != http.StatusConflict || string(got) != "bye" {
		t.Fatalf("close: %d %q %v", status, got, err)
	}
	if c.conn != nil {
		t.Fatal("connection kept after the server said close")
	}
	if status, _, err := c.roundTrip(renderPost(addr, prefix+"/fixed", "tok", body), 5*time.Second); err != nil || status != http.StatusCreated {
		t.Fatalf("after close: %d %v", status, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want a second one after the close", n)
	}

	// interrupt, from another goroutine, ends a request in flight and
	// refuses the next.
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.interrupt()
	}()
	start := time.Now()
	if _, _, err := c.roundTrip(renderPost(addr, prefix+"/slow", "tok", body), 5*time.Second); err == nil {
		t.Fatal("an interrupted request succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("interrupt took %s to end the request", d)
	}
	c.close()
	if _, _, err := c.roundTrip(renderPost(addr, prefix+"/fixed", "tok", body), 5*time.Second); err != errStopped {
		t.Fatalf("after interrupt: %v, want errStopped", err)
	}
}
