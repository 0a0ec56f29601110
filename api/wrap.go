package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ratelimit"
)

// wrap turns a route into an http.Handler: authentication, rate limits,
// the operator gate, then the handler under idempotency for POSTs.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request waiting on a lock someone holds must not move money
		// after its client has given up: its work ends at the deadline,
		// before the server's write timeout would cut the answer off.
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		// ServeMux answers HEAD wherever GET is routed. A HEAD of the
		// reveal would audit a reveal and spend the caller's budget to
		// show nothing.
		if rt.Reveal && r.Method == http.MethodHead {
			w.Header().Set("Allow", http.MethodGet)
			s.writeError(w, r, cardrail.Errorf(cardrail.CodeMethodNotAllowed, "HEAD is not allowed here; use GET."))
			return
		}
		ri := info(r)
		c, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cardrail"`)
			s.writeError(w, r, err)
			return
		}
		ri.caller = &c
		// The caller's bucket comes before the operator gate, so that a
		// refused request costs its caller like any other and cannot probe
		// the ops API without limit.
		if !s.rateLimit(w, r, s.limiter, "", c) {
			return
		}
		if rt.Access == operator && !c.IsOperator() {
			s.writeError(w, r, cardrail.Errorf(cardrail.CodeForbidden, "This endpoint needs the ops role."))
			return
		}
		if err := checkQuery(r, rt.Name); err != nil {
			s.writeError(w, r, err)
			return
		}
		if rt.Reveal && !s.rateLimit(w, r, s.reveal, revealBucket, c) {
			return
		}
		keys := r.Header.Values("Idempotency-Key")
		if r.Method != http.MethodPost || len(keys) == 0 {
			s.write(w, s.run(rt, r, c))
			return
		}
		// A key that is sent must be usable: an empty one silently running
		// the request without idempotency is how a client bug charges twice.
		if len(keys) > 1 || !validKey(keys[0]) {
			s.writeError(w, r, cardrail.Errorf(cardrail.CodeIdempotencyKeyInvalid, "Send one Idempotency-Key of 1 to 255 printable ASCII characters."))
			return
		}
		s.idempotent(w, r, rt, c, keys[0])
	})
}

// idempotencyWriteTimeout bounds recording a response (or releasing the
// key) after the request ran; see config.MaxRequestTimeout.
const idempotencyWriteTimeout = 3 * time.Second

// validKey reports whether an Idempotency-Key is 1 to 255 printable ASCII
// characters.
func validKey(key string) bool {
	if key == "" || len(key) > 255 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < ' ' || key[i] > '~' {
			return false
		}
	}
	return true
}

func (s *Server) authenticate(r *http.Request) (cardrail.Caller, error) {
	if len(r.Header.Values("Authorization")) > 1 {
		return cardrail.Caller{}, cardrail.Errorf(cardrail.CodeUnauthenticated, "Send one Authorization header.")
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return cardrail.Caller{}, cardrail.Errorf(cardrail.CodeUnauthenticated, "Send Authorization: Bearer <token>.")
	}
	return s.verifier.Verify(strings.TrimSpace(token))
}

// run calls the handler and renders its result or error.
func (s *Server) run(rt route, r *http.Request, c cardrail.Caller) response {
	status, body, err := rt.Handle(s, r, c)
	if err != nil {
		return s.problemResponse(r, err)
	}
	if once, ok := body.(shownOnce); ok {
		res := jsonResponse(status, once.v)
		res.secret = true
		return res
	}
	return jsonResponse(status, body)
}

// idempotent runs a POST at most once per key: the first response is stored
// and replayed byte for byte; a different request under the same key, or one
// racing the first, is refused. 401, 429 and 5xx are not stored.
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, rt route, c cardrail.Caller, key string) {
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.New()
	io.WriteString(sum, r.Method+" "+r.URL.Path+"\n")
	sum.Write(body)
	fingerprint := hex.EncodeToString(sum.Sum(nil))
	scope := modeName(c.Livemode) + ":" + c.Subject

	rec, err := s.idem.BeginIdempotent(r.Context(), scope, key, fingerprint, s.now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch rec.Outcome {
	case cardrail.IdempotencyReplay:
		body, err := s.openBody(scope, key, rec.Body)
		if err != nil {
			s.log.ErrorContext(r.Context(), "idempotent replay failed", "request_id", info(r).id, "error", err.Error())
			s.writeError(w, r, cardrail.Errorf(cardrail.CodeInternal, ""))
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		s.write(w, response{status: rec.Status, contentType: rec.ContentType, body: body})
		return
	case cardrail.IdempotencyReused:
		s.writeError(w, r, cardrail.Errorf(cardrail.CodeIdempotencyKeyReused, "This Idempotency-Key was used with a different request."))
		return
	case cardrail.IdempotencyResponseLost:
		did, read := "took effect", "the object"
		if rec.Created != "" {
			did, read = "created "+rec.Created, rec.Created
		}
		e := cardrail.Errorf(cardrail.CodeIdempotencyResponseLost,
			"The request with this Idempotency-Key %s, but its response was lost when the server stopped; it will not run again. Read %s to see the result.", did, read)
		e.Reference = rec.Created
		s.writeError(w, r, e)
		return
	case cardrail.IdempotencyInProgress:
		s.writeError(w, r, cardrail.Errorf(cardrail.CodeIdempotencyInProgress, "A request with this Idempotency-Key is still in progress."))
		return
	}
	ctx := cardrail.WithIdempotencyMark(r.Context(), cardrail.IdempotencyMark{Scope: scope, Key: key, Token: rec.Token, Reserved: rec.Reserved})
	res := s.run(rt, r.WithContext(ctx), c)
	// Storing the outcome must not depend on the client still listening,
	// nor on the request's deadline; it is bounded on its own.
	store, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), idempotencyWriteTimeout)
	defer cancel()
	if !kept(res.status) {
		err = s.idem.ReleaseIdempotent(store, scope, key, rec.Token)
	} else {
		stored := res.body
		if res.secret {
			stored, err = s.sealBody(scope, key, res.body)
		}
		if err == nil {
			err = s.idem.CompleteIdempotent(store, scope, key, rec.Token, res.status, res.contentType, stored)
		}
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "idempotency store failed", "request_id", info(r).id, "error", err.Error())
		s.writeError(w, r, err)
		return
	}
	s.write(w, res)
}

// rateLimit applies l to the caller and sets the RateLimit headers; it
// writes the 429 itself and reports false when the caller is over the limit.
// bucket goes before the caller's key, so that limiters sharing one Redis
// keep their buckets apart.
func (s *Server) rateLimit(w http.ResponseWriter, r *http.Request, l ratelimit.Limiter, bucket string, c cardrail.Caller) bool {
	d, err := l.Allow(r.Context(), bucket+modeName(c.Livemode)+":"+c.Subject)
	if err != nil {
		s.log.WarnContext(r.Context(), "rate limiter failed; allowing", "error", err.Error())
		return true
	}
	if d.Limit <= 0 {
		return true
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(max(d.Remaining, 0)))
	h.Set("RateLimit-Reset", strconv.Itoa(int((d.Reset+time.Second-1)/time.Second)))
	if d.Allowed {
		return true
	}
	h.Set("Retry-After", strconv.Itoa(max(1, int((d.RetryAfter+time.Second-1)/time.Second))))
	if bucket == revealBucket {
		s.writeError(w, r, cardrail.Errorf(cardrail.CodeRateLimited,
			"Too many card-details reveals: %d a minute per caller; retry after the Retry-After interval.", s.cfg.RevealLimit))
		return false
	}
	s.writeError(w, r, cardrail.Errorf(cardrail.CodeRateLimited, "Too many requests; retry after the Retry-After interval."))
	return false
}

// revealBucket keeps the card-details reveal limit's buckets apart from the
// general limit's when both live in one Redis.
const revealBucket = "reveal:"

func modeName(livemode bool) string {
	if livemode {
		return "live"
	}
	return "test"
}

// kept reports whether an answer is stored under its Idempotency-Key. One
// that says the request did not run to its end (401, 429, 5xx, or 499 when
// the client went away) is not: the key is released and the retry runs.
func kept(status int) bool {
	return status != http.StatusUnauthorized && status != http.StatusTooManyRequests &&
		status != StatusClientClosedRequest && status < 500
}
