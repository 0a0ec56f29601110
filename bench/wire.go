package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// wireConn is the load generator's side of one keep-alive HTTP/1.1
// connection. It writes requests rendered ahead of time and reads answers
// with a single buffered reader: no header maps, no per-request goroutines,
// so the generator leaves more of the machine it shares with the server to
// the server. It speaks only what a benchmark needs — plain HTTP/1.1 with
// Content-Length or chunked bodies — and net/http remains the client for
// anything else (https targets).
type wireConn struct {
	addr string
	conn net.Conn
	r    *bufio.Reader
	body []byte
	// deadline is the connection's current read and write deadline.
	deadline time.Time

	// mu guards conn against interrupt, and stopped.
	mu      sync.Mutex
	stopped bool
}

// wireTarget splits an http:// base URL into the address to dial and the
// path prefix requests start with; ok is false for anything the wire client
// does not speak.
func wireTarget(base string) (addr, prefix string, ok bool) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", "", false
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, u.EscapedPath(), true
}

// renderPost renders a complete POST with a JSON body.
func renderPost(host, path, token string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, host, token, len(body))
	b.Write(body)
	return b.Bytes()
}

// roundTrip writes one rendered request and returns the answer's status
// and body. The body slice is reused by the next call.
func (c *wireConn) roundTrip(req []byte, timeout time.Duration) (int, []byte, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, timeout)
		if err != nil {
			return 0, nil, err
		}
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			conn.Close()
			return 0, nil, errStopped
		}
		c.conn, c.r, c.deadline = conn, bufio.NewReaderSize(conn, 16<<10), time.Time{}
		c.mu.Unlock()
	}
	// Moving the deadline is a syscall's worth of work; it is pushed out
	// only once it is less than half the timeout away, and never after
	// interrupt has pulled it in.
	if now := time.Now(); c.deadline.Sub(now) < timeout/2 {
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			return 0, nil, errStopped
		}
		c.deadline = now.Add(timeout)
		_ = c.conn.SetDeadline(c.deadline)
		c.mu.Unlock()
	}
	if _, err := c.conn.Write(req); err != nil {
		c.close()
		return 0, nil, err
	}
	status, body, keep, err := c.readResponse()
	if err != nil {
		c.close()
		return 0, nil, err
	}
	if !keep {
		c.close()
	}
	return status, body, nil
}

// close closes the connection; only the goroutine making the requests
// calls it.
func (c *wireConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

var errStopped = errors.New("bench: client stopped")

// interrupt ends the request in flight, if any, and every later one. Any
// goroutine may call it: it only moves the deadline into the past, and the
// goroutine making the requests closes the connection.
func (c *wireConn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.conn != nil {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	}
}

var errMalformed = errors.New("bench: malformed HTTP response")

// readResponse reads a status line, headers and body.
func (c *wireConn) readResponse() (status int, body []byte, keep bool, err error) {
	line, err := c.line()
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 201 Created"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, errMalformed
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, errMalformed
	}
	keep = line[7] == '1'
	length, chunked := -1, false
	for {
		h, err := c.line()
		if err != nil {
			return 0, nil, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, errMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		for {
			h, err := c.line()
			if err != nil {
				return 0, nil, false, err
			}
			size, _, _ := bytes.Cut(h, []byte(";"))
			n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
			if err != nil {
				return 0, nil, false, errMalformed
			}
			if n == 0 {
				// Trailers, then the blank line.
				for {
					t, err := c.line()
					if err != nil {
						return 0, nil, false, err
					}
					if len(t) == 0 {
						return status, c.body, keep, nil
					}
				}
			}
			if c.body, err = c.read(c.body, int(n)); err != nil {
				return 0, nil, false, err
			}
			if crlf, err := c.line(); err != nil || len(crlf) != 0 {
				return 0, nil, false, errMalformed
			}
		}
	case length >= 0:
		c.body, err = c.read(c.body, length)
		return status, c.body, keep, err
	default:
		// No length: the body runs to the connection's end.
		c.body, err = io.ReadAll(c.r)
		return status, c.body, false, err
	}
}

// line reads one CRLF-terminated line without its terminator. The slice is
// valid until the next read.
func (c *wireConn) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

// read appends exactly n bytes to dst.
func (c *wireConn) read(dst []byte, n int) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	_, err := io.ReadFull(c.r, dst[start:])
	return dst, err
}
