package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cardrail/cardrail/app"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/ledgercheck"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

// The crash test's shape: a few cards under a money load from several
// clients, killed at a random moment.
const (
	crashCards   = 4
	crashClients = 8
	crashDeposit = 50_000_000 // minor units in the wallet at setup
	crashFunding = 400_000    // put on each card at setup
	crashSubject = "crash"
)

// TestCrashRecovery runs the real cardrail binary, drives money through it
// from concurrent clients, kills it with SIGKILL at a random moment, restarts
// it on the same database and holds it to what it promised: the ledger
// invariants hold; every acknowledged request replays byte for byte under its
// Idempotency-Key; every unacknowledged one, retried with its key, either
// replays (it had completed), runs now (it had not), or, while its first
// attempt's key is still held, is known from the database to have applied
// exactly once or not at all; and every card and the wallet hold exactly
// what the requests that applied say.
//
// A first attempt killed mid-flight leaves its key held: for two minutes if
// its effect had not committed (then a retry takes the key over and runs),
// and for the key's 24 hours if the effect committed but its answer was
// lost. Retries meanwhile answer 409 idempotency_request_in_progress, which
// the test accepts and resolves from the key's applied mark, written in the
// effect's own transaction.
//
// Each backend runs CARDRAIL_CRASH_ROUNDS rounds (default 3), each one a
// load, a crash and a recovery on the same database.
func TestCrashRecovery(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: the crash test builds the cardrail binary and needs the go command on PATH (%v)", err)
	}
	bin := filepath.Join(t.TempDir(), "cardrail")
	start := time.Now()
	if out, err := exec.Command(goCmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("CARDRAIL_CRASH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	testdb.Each(t, func(t *testing.T, url string) {
		c := newCrashRun(t, bin, url)
		for round := 1; round <= rounds; round++ {
			c.round(round)
		}
		var acked int
		for _, r := range c.requests {
			if r.acked {
				acked++
			}
		}
		t.Logf("%d rounds: %d requests sent, %d acknowledged, %d approved authorizations answered", rounds, len(c.requests), acked, len(c.auths))
	})
}

// crashRun is one backend's database, the server running on it, and every
// request sent to it.
type crashRun struct {
	t     *testing.T
	bin   string
	url   string
	env   []string
	http  *http.Client
	srv   *serverProcess
	token string
	cards []string
	hooks *crashReceiver

	mu       sync.Mutex
	seq      int
	amounts  map[string]int64 // card and kind → amounts handed out so far
	pool     []*knownAuth     // approved authorizations the load may settle or reverse
	auths    map[string]*knownAuth
	requests []*crashRequest
}

// knownAuth is an approved authorization the test has seen.
type knownAuth struct {
	ref    string
	card   string
	amount int64
}

// crashRequest is one money-moving POST and what became of it.
type crashRequest struct {
	round  int
	kind   string // fund, withdraw, authorize, settle, reverse
	card   string
	auth   *knownAuth // settle and reverse
	amount int64      // 0: none sent (settle and reverse take everything)
	path   string
	body   []byte
	key    string

	// The first attempt's answer, if it arrived.
	acked  bool
	status int
	resp   []byte

	// What recovery found out: whether the effect applied, and the answer
	// that says so (nil when only the database knows).
	retry   string // how the retry was answered: replayed, ran, in progress
	applied bool
	outcome []byte
}

func (r *crashRequest) String() string {
	return fmt.Sprintf("%s %s (key %s, amount %d)", r.kind, r.path, r.key, r.amount)
}

func newCrashRun(t *testing.T, bin, url string) *crashRun {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CARDRAIL_") {
			env = append(env, kv)
		}
	}
	// Short retries, so that failed first attempts come round again within
	// a round and queue heads move while the server is killed.
	env = append(env, "CARDRAIL_DATABASE_URL="+url, "CARDRAIL_RATE_LIMIT=0", "CARDRAIL_LOG_LEVEL=warn",
		"CARDRAIL_WEBHOOK_RETRY_SCHEDULE=10ms,20ms,40ms,80ms,160ms")
	c := &crashRun{
		t: t, bin: bin, url: url, env: env,
		http:    &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * crashClients}},
		amounts: map[string]int64{}, auths: map[string]*knownAuth{},
		hooks: newCrashReceiver(t),
	}
	t.Cleanup(c.kill)
	return c
}

// crashReceiver is the webhook endpoint of a crash run. It refuses the
// first attempt at every tenth event, so that deliveries also wait for
// retries when the server is killed.
type crashReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	tries map[string]int
}

func newCrashReceiver(t *testing.T) *crashReceiver {
	r := &crashReceiver{tries: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		r.tries[id]++
		first := r.tries[id] == 1
		r.mu.Unlock()
		h := fnv.New32a()
		h.Write([]byte(id))
		if first && h.Sum32()%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// round is one load, crash and recovery; the first round also starts the
// server and sets up the wallet and cards.
func (c *crashRun) round(n int) {
	if c.srv == nil {
		c.start()
		c.setup()
	}
	sent := c.load(n)
	c.awaitDeadSessions()
	c.start()
	c.verify(n, sent)
}

// awaitDeadSessions waits until PostgreSQL has finished with the killed
// server's connections. A transaction whose writes and COMMIT were already
// on the wire when the server died still commits afterwards, effect and
// idempotency mark together; judging the keys before that would see an
// effect that is still landing as one that never happened. (A retry in
// that window rightly answers "in progress".) SQLite has no sessions that
// outlive the process.
func (c *crashRun) awaitDeadSessions() {
	if !strings.HasPrefix(c.url, "postgres") {
		return
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		c.t.Fatalf("connect to the database: %v", err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Nothing else is connected now: the next server has not started.
		var others int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&others)
		if err != nil {
			c.t.Fatalf("count the killed server's sessions: %v", err)
		}
		if others == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d sessions of the killed server still open after 20 s", others)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverProcess is a running `cardrail serve`.
type serverProcess struct {
	cmd    *exec.Cmd
	base   string
	logs   *apptest.SyncBuffer
	exited chan struct{}
}

func (c *crashRun) start() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(c.bin, "serve")
	cmd.Env = append(slices.Clone(c.env), "CARDRAIL_ADDR="+addr)
	logs := &apptest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start cardrail serve: %v", err)
	}
	p := &serverProcess{cmd: cmd, base: "http://" + addr, logs: logs, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	c.srv = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			c.t.Fatalf("cardrail serve exited before it was ready (%v):\n%s", cmd.ProcessState, logs.String())
		default:
		}
		if res, err := c.http.Get(p.base + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cardrail serve not ready after 30s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the server with SIGKILL: no shutdown, no flush, no goodbye.
func (c *crashRun) kill() {
	if c.srv == nil {
		return
	}
	_ = c.srv.cmd.Process.Kill()
	<-c.srv.exited
	c.srv = nil
	c.http.CloseIdleConnections()
}

// answer is a response that arrived whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a *answer) field(name string) string {
	var m map[string]any
	_ = json.Unmarshal(a.body, &m)
	s, _ := m[name].(string)
	return s
}

func (c *crashRun) do(base, method, path string, body []byte, key string) (*answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+"/cards/api/v1"+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err // a cut-off body acknowledges nothing
	}
	return &answer{status: res.StatusCode, header: res.Header, body: b}, nil
}

// must sends a setup or verification request and fails the test unless it
// is answered with want.
func (c *crashRun) must(want int, method, path string, body any) *answer {
	c.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			c.t.Fatalf("encode: %v", err)
		}
	}
	key := ""
	if method == http.MethodPost {
		key = fmt.Sprintf("setup-%d", time.Now().UnixNano())
	}
	a, err := c.do(c.srv.base, method, path, b, key)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if a.status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, a.status, want, a.body)
	}
	return a
}

// setup mints tokens with `cardrail token` (the secret is the one the
// server generated into the database), registers the webhook endpoint,
// fills the wallet and funds the cards.
func (c *crashRun) setup() {
	// The authorizations' events go to one queue each, the cards' to four
	// long ones; the wallet's single queue is left out, to keep the
	// deliveries close behind the load.
	c.token = c.mint("--sub", "crash-ops", "--role", "ops")
	c.must(http.StatusCreated, "POST", "/ops/webhook-endpoints/", map[string]any{"url": c.hooks.URL + "/hooks",
		"events": []string{"card.authorization.created", "card.authorization.updated", "card.funded", "card.withdrawn"}})
	c.token = c.mint("--sub", crashSubject)
	c.must(http.StatusOK, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": crashDeposit, "currency": "USD"})
	for range crashCards {
		ref := c.must(http.StatusCreated, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).field("reference")
		c.must(http.StatusOK, "POST", "/managed-cards/"+ref+"/fund/", map[string]any{"amount": crashFunding})
		c.cards = append(c.cards, ref)
	}
}

// mint runs `cardrail token` with args and returns the token.
func (c *crashRun) mint(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"token"}, args...)...)
	cmd.Env = c.env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		c.t.Fatalf("cardrail token %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// load drives requests from crashClients clients and kills the server after
// 200–800 ms; it returns how many requests were sent.
func (c *crashRun) load(round int) int {
	before := len(c.requests)
	base := c.srv.base
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			for !stop.Load() {
				r := c.next(rng, round)
				a, err := c.do(base, "POST", r.path, r.body, r.key)
				c.record(r, a, err)
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(200*time.Millisecond + rand.N(600*time.Millisecond))
	stop.Store(true)
	c.kill()
	wg.Wait()
	return len(c.requests) - before
}

// next makes up the next request. Fund, withdraw and authorize amounts are
// unique per card and kind, so the effect of each request can be found in
// the database whether or not its answer arrived.
func (c *crashRun) next(rng *rand.Rand, round int) *crashRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	r := &crashRequest{round: round, key: fmt.Sprintf("crash-%d-%d", round, c.seq)}
	unique := func(card, kind string) int64 {
		c.amounts[card+"/"+kind]++
		return c.amounts[card+"/"+kind]
	}
	kinds := []string{"fund", "fund", "withdraw", "authorize", "authorize", "authorize", "settle", "settle", "reverse", "reverse"}
	r.kind = kinds[rng.IntN(len(kinds))]
	if (r.kind == "settle" || r.kind == "reverse") && len(c.pool) == 0 {
		r.kind = "authorize"
	}
	var body map[string]any
	switch r.kind {
	case "fund", "withdraw", "authorize":
		r.card = c.cards[rng.IntN(len(c.cards))]
		r.path = "/managed-cards/" + r.card + "/" + r.kind + "/"
	default:
		r.auth = c.pool[rng.IntN(len(c.pool))]
		r.card = r.auth.card
		r.path = "/authorizations/" + r.auth.ref + "/" + r.kind + "/"
	}
	switch r.kind {
	case "fund":
		r.amount = 500 + unique(r.card, r.kind)
		body = map[string]any{"amount": r.amount}
	case "withdraw":
		r.amount = 300 + unique(r.card, r.kind)
		body = map[string]any{"amount": r.amount}
	case "authorize":
		r.amount = unique(r.card, r.kind)
		body = map[string]any{"amount": r.amount, "currency": "USD",
			"merchant": map[string]any{"name": "Crash Cafe", "mcc": "5814", "country": "US"}}
	case "settle":
		body = map[string]any{}
		if rng.IntN(2) == 0 {
			r.amount = 1 + rng.Int64N(r.auth.amount)
			body["amount"] = r.amount
		}
	case "reverse":
		body = map[string]any{}
		if rng.IntN(2) == 0 {
			r.amount = 1 + rng.Int64N(max(1, r.auth.amount/3))
			body["amount"] = r.amount
		}
	}
	r.body, _ = json.Marshal(body)
	c.requests = append(c.requests, r)
	return r
}

// record keeps the first attempt's answer, if one arrived.
func (c *crashRun) record(r *crashRequest, a *answer, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		return
	}
	r.acked, r.status, r.resp = true, a.status, a.body
	c.learn(r, a)
}

// learn notes an approved authorization, and drops from the pool one that
// is no longer pending. c.mu is held.
func (c *crashRun) learn(r *crashRequest, a *answer) {
	switch {
	case r.kind == "authorize" && a.status == http.StatusCreated && a.field("status") == "pending":
		k := &knownAuth{ref: a.field("reference"), card: r.card, amount: r.amount}
		c.auths[k.ref] = k
		c.pool = append(c.pool, k)
	case (r.kind == "settle" || r.kind == "reverse") && a.status == http.StatusOK && a.field("status") != "pending":
		c.pool = slices.DeleteFunc(c.pool, func(k *knownAuth) bool { return k == r.auth })
	}
}

// verify checks a round after the restart: first the state the crash left,
// then the replays, then the retries, then every balance.
func (c *crashRun) verify(round, sent int) {
	ctx := context.Background()
	st, err := app.OpenStore(ctx, c.url)
	if err != nil {
		c.t.Fatalf("open the database: %v", err)
	}
	defer st.Close()
	if err := ledgercheck.Check(ctx, st.Conn()); err != nil {
		c.t.Fatalf("round %d, right after the crash, ledger invariants:\n%v", round, err)
	}
	var acked, unacked []*crashRequest
	for _, r := range c.requests {
		switch {
		case r.round != round:
		case r.acked:
			acked = append(acked, r)
		default:
			unacked = append(unacked, r)
		}
	}
	c.replayAcknowledged(acked)
	counts := c.retryUnacknowledged(st, unacked)
	if c.t.Failed() {
		c.t.FailNow()
	}
	if err := ledgercheck.Check(ctx, st.Conn()); err != nil {
		c.t.Fatalf("round %d, after the retries, ledger invariants:\n%v", round, err)
	}
	c.checkMoney(ctx, st, round)
	deliveries := c.deliveries(ctx, st)
	c.t.Logf("round %d: %d requests sent, %d acknowledged and replayed byte for byte, %d unacknowledged retried "+
		"(%d replayed, %d ran now, %d held in progress: %d of them had applied); webhook deliveries %v",
		round, sent, len(acked), len(unacked), counts["replayed"], counts["ran"], counts["in progress"], counts["in progress applied"], deliveries)
	if deliveries["delivered"] == 0 {
		c.t.Errorf("round %d: no webhook delivered, so the queues were not exercised", round)
	}
	if c.t.Failed() {
		c.t.FailNow()
	}
}

// deliveries counts the webhook deliveries by status. Their queues' heads
// were checked with the ledger invariants.
func (c *crashRun) deliveries(ctx context.Context, st *sqlstore.Store) map[string]int {
	rows, err := st.Conn().Query(ctx, `SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status`)
	if err != nil {
		c.t.Fatalf("count webhook deliveries: %v", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			c.t.Fatalf("count webhook deliveries: %v", err)
		}
		out[status] = n
	}
	return out
}

// replayAcknowledged sends every acknowledged request again with its key:
// the answer must be the first one, byte for byte, marked as a replay.
func (c *crashRun) replayAcknowledged(acked []*crashRequest) {
	base := c.srv.base
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
		next atomic.Int64
	)
	for range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(acked); i = int(next.Add(1)) - 1 {
				r := acked[i]
				a, err := c.do(base, "POST", r.path, r.body, r.key)
				var problem string
				switch {
				case err != nil:
					problem = err.Error()
				case r.status >= 500:
					problem = fmt.Sprintf("the first answer was a server error %d: %s", r.status, r.resp)
				case a.header.Get("Idempotent-Replayed") != "true" || a.status != r.status || !bytes.Equal(a.body, r.resp):
					problem = fmt.Sprintf("replay answered %d (Idempotent-Replayed %q) %s; first answer %d %s",
						a.status, a.header.Get("Idempotent-Replayed"), a.body, r.status, r.resp)
				}
				mu.Lock()
				if problem != "" {
					errs = append(errs, r.String()+": "+problem)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if i == 10 {
			c.t.Errorf("… and %d more", len(errs)-i)
			break
		}
		c.t.Errorf("acknowledged %s", e)
	}
	for _, r := range acked {
		r.applied, r.outcome = r.status >= 200 && r.status < 300, r.resp
	}
}

// retryUnacknowledged retries each unacknowledged request with its key and
// finds out whether it applied.
func (c *crashRun) retryUnacknowledged(st *sqlstore.Store, unacked []*crashRequest) map[string]int {
	counts := map[string]int{}
	for _, r := range unacked {
		a, err := c.do(c.srv.base, "POST", r.path, r.body, r.key)
		if err != nil {
			c.t.Fatalf("retry %s: %v", r, err)
		}
		if a.status >= 500 {
			c.t.Errorf("retry %s: server error %d: %s", r, a.status, a.body)
			continue
		}
		switch {
		case a.header.Get("Idempotent-Replayed") == "true":
			r.retry = "replayed"
		case a.status == http.StatusConflict && a.field("code") == "idempotency_request_in_progress":
			// The first attempt's key is still held: its effect either
			// committed together with the key's applied mark, or not at
			// all. The key is taken over only once it is stale, so the
			// database tells which.
			r.retry = "in progress"
			var applied bool
			var response *int
			err := st.Conn().QueryRow(context.Background(), `SELECT applied, response_status FROM idempotency_keys
				WHERE scope = $1 AND key = $2`, "test:"+crashSubject, r.key).Scan(&applied, &response)
			if err != nil {
				c.t.Errorf("retry %s answered in progress, but its key: %v", r, err)
				continue
			}
			if response != nil {
				c.t.Errorf("retry %s answered in progress, but its key holds a %d response", r, *response)
			}
			r.applied = applied
			if applied {
				counts["in progress applied"]++
			}
		default:
			r.retry = "ran"
		}
		counts[r.retry]++
		if r.retry != "in progress" {
			r.applied, r.outcome = a.status >= 200 && a.status < 300, a.body
			c.mu.Lock()
			c.learn(r, a)
			c.mu.Unlock()
			// Now answered, the request replays like any other.
			again, err := c.do(c.srv.base, "POST", r.path, r.body, r.key)
			if err != nil || again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, a.body) {
				c.t.Errorf("second retry of %s does not replay the first retry's answer", r)
			}
		}
	}
	return counts
}

// dbAuth is an authorization as the database holds it.
type dbAuth struct {
	ref                                       string
	status                                    string
	amount, held, settled, reversed, refunded int64
	matched                                   bool
}

// checkMoney holds the database and the API to the requests that applied:
// each fund, withdrawal and authorization exactly once if it applied and
// not at all otherwise, no effect that no request explains, each
// authorization's settlement and reversals as its applied requests say, and
// every balance the sum of it all.
func (c *crashRun) checkMoney(ctx context.Context, st *sqlstore.Store, round int) {
	type entryKey struct {
		typ    string
		amount int64
	}
	var walletWant int64 = crashDeposit
	for _, card := range c.cards {
		entries := map[entryKey]int{}
		rows, err := st.Conn().Query(ctx, `SELECT e.type, l.amount FROM journal_entries e
			JOIN journal_lines l ON l.entry = e.reference
			WHERE e.card = $1 AND l.account = $2 AND e.type IN ($3, $4)`,
			card, ledger.CardAvailableAccount(card), ledger.TypeCardFunding, ledger.TypeCardWithdrawal)
		if err != nil {
			c.t.Fatalf("journal of %s: %v", card, err)
		}
		for rows.Next() {
			var k entryKey
			if err := rows.Scan(&k.typ, &k.amount); err != nil {
				c.t.Fatalf("journal of %s: %v", card, err)
			}
			entries[entryKey{k.typ, max(k.amount, -k.amount)}]++
		}
		rows.Close()
		auths := map[int64][]*dbAuth{}
		var all []*dbAuth
		rows, err = st.Conn().Query(ctx, `SELECT reference, status, amount, held_amount, settled_amount, reversed_amount,
			refunded_amount FROM authorizations WHERE card = $1`, card)
		if err != nil {
			c.t.Fatalf("authorizations of %s: %v", card, err)
		}
		for rows.Next() {
			a := &dbAuth{}
			if err := rows.Scan(&a.ref, &a.status, &a.amount, &a.held, &a.settled, &a.reversed, &a.refunded); err != nil {
				c.t.Fatalf("authorizations of %s: %v", card, err)
			}
			auths[a.amount] = append(auths[a.amount], a)
			all = append(all, a)
		}
		rows.Close()

		funded, withdrawn := int64(crashFunding), int64(0)
		entries[entryKey{ledger.TypeCardFunding, crashFunding}]-- // the setup's
		for _, r := range c.requests {
			if r.card != card {
				continue
			}
			want := 0
			if r.applied {
				want = 1
			}
			switch r.kind {
			case "fund", "withdraw":
				k := entryKey{ledger.TypeCardFunding, r.amount}
				if r.kind == "withdraw" {
					k.typ = ledger.TypeCardWithdrawal
					withdrawn += int64(want) * r.amount
				} else {
					funded += int64(want) * r.amount
				}
				if got := entries[k]; got != want {
					c.t.Errorf("%s (applied %v, retry %q): %d journal entries, want %d", r, r.applied, r.retry, got, want)
				}
				delete(entries, k)
			case "authorize":
				found := auths[r.amount]
				if len(found) != want {
					c.t.Errorf("%s (applied %v, retry %q): %d authorizations of that amount, want %d", r, r.applied, r.retry, len(found), want)
					continue
				}
				if want == 1 {
					found[0].matched = true
					c.checkAuthorizationAnswer(r, found[0], r.round == round)
				}
			}
		}
		for k, n := range entries {
			if n != 0 {
				c.t.Errorf("card %s: %d %s entries of %d that no request explains", card, n, k.typ, k.amount)
			}
		}
		var spent, held int64
		for _, a := range all {
			if !a.matched {
				c.t.Errorf("card %s: authorization %s of %d that no applied request explains", card, a.ref, a.amount)
			}
			if a.status != "declined" {
				c.checkSettleAndReverse(a)
				spent += a.held + a.settled
				held += a.held
			}
		}
		var got struct {
			Balance struct{ Available, Held int64 }
		}
		if err := json.Unmarshal(c.must(http.StatusOK, "GET", "/managed-cards/"+card+"/", nil).body, &got); err != nil {
			c.t.Fatalf("card %s: %v", card, err)
		}
		if want := funded - withdrawn - spent; got.Balance.Available != want || got.Balance.Held != held {
			c.t.Errorf("round %d: card %s available %d held %d; the applied requests say available %d (funded %d, withdrawn %d, spent %d) held %d",
				round, card, got.Balance.Available, got.Balance.Held, want, funded, withdrawn, spent, held)
		}
		walletWant -= funded - withdrawn
	}
	var wallets struct {
		Data []struct {
			Currency string
			Balance  struct{ Available int64 }
		}
	}
	if err := json.Unmarshal(c.must(http.StatusOK, "GET", "/wallets/", nil).body, &wallets); err != nil {
		c.t.Fatalf("wallets: %v", err)
	}
	if len(wallets.Data) != 1 || wallets.Data[0].Currency != "USD" || wallets.Data[0].Balance.Available != walletWant {
		c.t.Errorf("round %d: wallets %+v; the applied requests say USD %d", round, wallets.Data, walletWant)
	}
}

// checkAuthorizationAnswer holds an authorization to the answer its
// request got and, when get is set, reads it back through the API: its
// status is the answered one or a later one.
func (c *crashRun) checkAuthorizationAnswer(r *crashRequest, a *dbAuth, get bool) {
	if r.outcome == nil {
		return // applied, answer lost: the database is all there is
	}
	ans := &answer{body: r.outcome}
	if ref := ans.field("reference"); ref != a.ref {
		c.t.Errorf("%s answered %s but the database holds %s", r, ref, a.ref)
		return
	}
	got := a.status
	if get {
		got = c.must(http.StatusOK, "GET", "/authorizations/"+a.ref+"/", nil).field("status")
	}
	later := map[string][]string{
		"pending":  {"pending", "settled", "reversed", "expired"},
		"declined": {"declined"},
	}[ans.field("status")]
	if !slices.Contains(later, got) || got != a.status {
		c.t.Errorf("%s answered %s, now GET says %s and the database %s", r, ans.field("status"), got, a.status)
	}
}

// checkSettleAndReverse holds an approved authorization to the settle and
// reverse requests that applied to it. Reversals before a settlement are
// the only ones that can apply, so the amounts follow exactly.
func (c *crashRun) checkSettleAndReverse(a *dbAuth) {
	var partial int64
	var full, settles []*crashRequest
	for _, r := range c.requests {
		if r.auth == nil || r.auth.ref != a.ref || !r.applied {
			continue
		}
		switch {
		case r.kind == "settle":
			settles = append(settles, r)
		case r.amount == 0:
			full = append(full, r)
		default:
			partial += r.amount
		}
	}
	describe := fmt.Sprintf("authorization %s (amount %d): %s held %d settled %d reversed %d", a.ref, a.amount, a.status, a.held, a.settled, a.reversed)
	switch {
	case len(settles)+len(full) > 1:
		c.t.Errorf("%s: %d settlements and %d full reversals applied; at most one can", describe, len(settles), len(full))
	case len(settles) == 1:
		want := settles[0].amount
		if want == 0 {
			want = a.amount - partial
		}
		if a.status != "settled" || a.settled != want || a.reversed != a.amount-want {
			c.t.Errorf("%s: want settled %d after reversals of %d", describe, want, partial)
		}
	case len(full) == 1:
		if a.status != "reversed" || a.reversed != a.amount || partial >= a.amount {
			c.t.Errorf("%s: want fully reversed after partial reversals of %d", describe, partial)
		}
	default:
		status := "pending"
		if partial == a.amount {
			status = "reversed"
		}
		if a.status != status || a.reversed != partial || a.held != a.amount-partial {
			c.t.Errorf("%s: want %s with reversals of %d", describe, status, partial)
		}
	}
}
