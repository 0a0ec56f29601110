// Package api is Cardrail's HTTP layer: the route table, strict decoding,
// RFC 9457 problems, authentication, idempotency, rate limits, metrics and
// request logs. Handlers translate between HTTP and the issuing service and
// hold no business rules.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/issuing"
	"github.com/cardrail/cardrail/ratelimit"
	"github.com/cardrail/cardrail/seal"
)

// BasePath prefixes every API route.
const BasePath = "/cards/api/v1"

// Verifier turns a bearer token into a caller (auth.Verifier).
type Verifier interface {
	Verify(token string) (cardrail.Caller, error)
}

// Config is what the HTTP layer needs beyond the service.
type Config struct {
	// RateLimit is requests per second per caller, burst twice that; 0
	// turns limiting off.
	RateLimit float64
	// RevealLimit is card-details reveals per minute per caller;
	// DefaultRevealLimit when 0.
	RevealLimit int
	// RevealLimiter replaces the in-process reveal limiter (Redis-backed,
	// shared by instances) when set; it must keep RevealLimit a minute.
	RevealLimiter ratelimit.Limiter
	// Limiter replaces the in-process limiter (Redis-backed, shared by
	// instances) when set.
	Limiter ratelimit.Limiter
	// Ready reports readiness detail beyond the database (e.g. Redis).
	Ready func(ctx context.Context) map[string]string
	// Webhooks administers webhook endpoints and deliveries for the
	// operator API; nil leaves those routes answering 503.
	Webhooks WebhookAdmin
	// Keys seals the stored copy of a response that shows a secret once,
	// kept for idempotent replay.
	Keys *seal.Keyring
	// RequestTimeout bounds each API request; one that runs out is rolled
	// back and answers 503 request_timeout. DefaultRequestTimeout when 0.
	RequestTimeout time.Duration
}

// DefaultRequestTimeout bounds an API request when the configuration does
// not.
const DefaultRequestTimeout = 20 * time.Second

// DefaultRevealLimit is card-details reveals per minute per caller.
const DefaultRevealLimit = 5

// Server serves the API.
type Server struct {
	svc      *issuing.Service
	verifier Verifier
	idem     cardrail.IdempotencyStore
	log      *slog.Logger
	cfg      Config
	limiter  ratelimit.Limiter
	reveal   ratelimit.Limiter
	metrics  *metrics
	mux      *http.ServeMux
	// headless holds the GET patterns that refuse HEAD (the reveal), so
	// a 405's Allow lists HEAD exactly where it is served.
	headless map[string]bool
	now      func() time.Time
}

// New builds the server and its routes.
func New(svc *issuing.Service, verifier Verifier, idem cardrail.IdempotencyStore, cfg Config, log *slog.Logger) *Server {
	if cfg.RevealLimit <= 0 {
		cfg.RevealLimit = DefaultRevealLimit
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{svc: svc, verifier: verifier, idem: idem, log: log, cfg: cfg, now: time.Now, mux: http.NewServeMux(), metrics: newMetrics(), headless: map[string]bool{}}
	s.limiter = cfg.Limiter
	if s.limiter == nil {
		s.limiter = ratelimit.NewLocal(cfg.RateLimit, int(2*cfg.RateLimit), time.Second)
	}
	s.reveal = cfg.RevealLimiter
	if s.reveal == nil {
		s.reveal = ratelimit.NewLocal(float64(cfg.RevealLimit)/60, cfg.RevealLimit, time.Minute)
	}
	for _, rt := range routes() {
		pattern := rt.Method + " " + BasePath + rt.Path + "{$}"
		s.mux.Handle(pattern, s.wrap(rt))
		if rt.Reveal {
			s.headless[pattern] = true
		}
	}
	s.mux.HandleFunc("GET /healthz/{$}", s.healthz)
	s.mux.HandleFunc("GET /readyz/{$}", s.readyz)
	s.mux.Handle("GET /metrics/{$}", s.metrics.handler())
	s.mux.HandleFunc("GET "+BasePath+"/openapi.json/{$}", s.openapi)
	return s
}

// reqInfo travels with a request so that the outer middleware can log and
// measure what the inner route learned.
type reqInfo struct {
	id      string
	pattern string
	caller  *cardrail.Caller
	err     error
}

type reqInfoKey struct{}

func info(r *http.Request) *reqInfo {
	ri, _ := r.Context().Value(reqInfoKey{}).(*reqInfo)
	if ri == nil {
		ri = &reqInfo{}
	}
	return ri
}

// ServeHTTP implements http.Handler: request id, trailing-slash
// normalisation, panic recovery, metrics and one log line per request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	// Echoed and stored (audit rows) only as 1 to 200 printable ASCII
	// characters; PostgreSQL would refuse some other bytes in text.
	if len(id) > 200 || !validKey(id) {
		id = cardrail.NewReference(cardrail.PrefixRequest)
	}
	w.Header().Set("X-Request-Id", id)
	// Every answer is for one caller at one moment (and one reveals a card
	// number): no cache along the way may keep it.
	w.Header()["Cache-Control"] = noStore
	ri := &reqInfo{id: id}
	ctx := context.WithValue(r.Context(), reqInfoKey{}, ri)
	r = r.WithContext(cardrail.WithRequestID(ctx, id))
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			s.log.ErrorContext(r.Context(), "panic", "request_id", id, "panic", v, "stack", string(debug.Stack()))
			if sw.status == 0 {
				s.writeError(sw, r, cardrail.Errorf(cardrail.CodeInternal, ""))
			}
		}
		s.observe(r, ri, sw.status, time.Since(start))
	}()
	// A path without its trailing slash answers the same, without a redirect.
	// The slash goes on the encoded form too, when there is one, so that an
	// escaped "/" (%2F) inside a segment stays inside it.
	if !strings.HasSuffix(r.URL.Path, "/") {
		r.URL.Path += "/"
		if r.URL.RawPath != "" {
			r.URL.RawPath += "/"
		}
	}
	r.Body = http.MaxBytesReader(sw, r.Body, maxBody)
	// No object's name holds a control character, invalid UTF-8, an empty
	// segment or a dot segment; answering those here keeps them from the
	// database (PostgreSQL refuses NUL and invalid UTF-8 in text) and
	// stops net/http from redirecting to a cleaned path.
	if !cleanPath(r.URL.Path) {
		s.writeError(sw, r, cardrail.Errorf(cardrail.CodeNotFound, "No such endpoint."))
		return
	}
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		s.noRoute(sw, r)
		return
	}
	// The route's pattern labels its metrics and log lines.
	ri.pattern = strings.TrimSuffix(pattern, "{$}")
	s.mux.ServeHTTP(sw, r)
}

// noStore is the Cache-Control value of every response, shared so that
// setting it costs no allocation (its capacity of one makes any append
// copy rather than write into it).
var noStore = []string{"no-store"}

// cleanPath reports whether p, which ends in "/", is a path the routes
// could name: already clean, and free of control characters and invalid
// UTF-8.
func cleanPath(p string) bool {
	if !cardrail.ValidText(p) {
		return false
	}
	c := path.Clean(p)
	if c == "/" {
		return p == "/"
	}
	return len(p) == len(c)+1 && p[:len(c)] == c
}

// noRoute answers 405 when the path exists under another method, else 404,
// both as problems.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" {
			allow = append(allow, m)
			if m == http.MethodGet && !s.headless[p] {
				allow = append(allow, http.MethodHead) // ServeMux answers HEAD wherever GET is routed
			}
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, cardrail.Errorf(cardrail.CodeMethodNotAllowed, "%s is not allowed here; use %s.", r.Method, strings.Join(allow, " or ")))
		return
	}
	s.writeError(w, r, cardrail.Errorf(cardrail.CodeNotFound, "No such endpoint."))
}

func (s *Server) observe(r *http.Request, ri *reqInfo, status int, d time.Duration) {
	pattern := ri.pattern
	if pattern == "" {
		pattern = "unmatched"
	}
	s.metrics.observe(r.Method, pattern, status, d)
	// LogAttrs with typed attributes: the access log runs on every
	// request, and boxing each value for Log's ...any showed in profiles.
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("request_id", ri.id), slog.String("method", methodLabel(r.Method)), slog.String("route", pattern),
		slog.Int("status", status), slog.Float64("duration_ms", float64(d.Microseconds())/1000))
	if ri.caller != nil {
		attrs = append(attrs, slog.String("sub", ri.caller.Subject), slog.Bool("livemode", ri.caller.Livemode))
	}
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status == StatusClientClosedRequest:
		// Not the server's fault, but what the request was doing when
		// its client left may be: a stall a client gave up on shows here.
		level = slog.LevelWarn
	}
	if level > slog.LevelInfo && ri.err != nil {
		attrs = append(attrs, slog.String("error", ri.err.Error()))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// response is what a handler produces; the framework renders it so that
// idempotency can store exactly the bytes it sent.
type response struct {
	status      int
	contentType string
	body        []byte
	// secret says the body shows a secret once; its stored copy is
	// sealed (see shownOnce).
	secret bool
}

func jsonResponse(status int, v any) response {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // every rendered type is plain data; failure is a bug
	}
	return response{status: status, contentType: "application/json", body: buf.Bytes()}
}

func (s *Server) problemResponse(r *http.Request, err error) response {
	ri := info(r)
	err = explain(r.Context(), err, s.cfg.RequestTimeout)
	p := problemFor(err, ri.id)
	if p.Status >= 500 || p.Status == StatusClientClosedRequest {
		ri.err = err
	}
	res := jsonResponse(p.Status, p)
	res.contentType = "application/problem+json"
	return res
}

func (s *Server) write(w http.ResponseWriter, res response) {
	w.Header().Set("Content-Type", res.contentType)
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	s.write(w, s.problemResponse(r, err))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.write(w, jsonResponse(http.StatusOK, map[string]string{"status": "ok"}))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	detail := map[string]string{"database": "ok"}
	status := http.StatusOK
	if err := s.svc.Store().Ping(ctx); err != nil {
		detail["database"] = "unreachable"
		status = http.StatusServiceUnavailable
	}
	if s.cfg.Ready != nil {
		for k, v := range s.cfg.Ready(ctx) {
			detail[k] = v
		}
	}
	detail["status"] = map[bool]string{true: "ready", false: "not_ready"}[status == http.StatusOK]
	s.write(w, jsonResponse(status, detail))
}
