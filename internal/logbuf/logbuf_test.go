package logbuf_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/logbuf"
)

func TestInfoWaitsForTheIntervalWarnGoesAtOnce(t *testing.T) {
	var sink apptest.SyncBuffer
	b := logbuf.New(&sink, 64<<10, time.Hour) // no periodic flush within the test
	defer b.Close()
	log := slog.New(logbuf.Handler(slog.NewJSONHandler(b, nil), b, slog.LevelWarn))
	log.Info("request", "n", 1)
	if got := sink.String(); got != "" {
		t.Fatalf("an info line reached the sink before a flush: %q", got)
	}
	log.With("request_id", "r1").Warn("trouble")
	got := sink.String()
	if !strings.Contains(got, `"msg":"request"`) || !strings.Contains(got, `"msg":"trouble"`) ||
		strings.Index(got, "request") > strings.Index(got, "trouble") {
		t.Fatalf("a warning must flush at once, after what came before it: %q", got)
	}
}

func TestFlushedEveryIntervalAndOnClose(t *testing.T) {
	var sink apptest.SyncBuffer
	b := logbuf.New(&sink, 64<<10, 10*time.Millisecond)
	if _, err := b.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); sink.String() == ""; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the periodic flush never came")
		}
	}
	if _, err := b.Write([]byte("last\n")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sink.String(); got != "first\nlast\n" {
		t.Fatalf("after Close: %q", got)
	}
}

// TestConcurrentLinesStayWhole: lines from many goroutines, through a
// buffer smaller than their total, come out whole and all there.
func TestConcurrentLinesStayWhole(t *testing.T) {
	var sink apptest.SyncBuffer
	b := logbuf.New(&sink, 4096, time.Millisecond)
	log := slog.New(logbuf.Handler(slog.NewJSONHandler(b, nil), b, slog.LevelWarn))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				if i%100 == 0 {
					log.Warn("line", "g", g, "i", i)
				} else {
					log.Info("line", "g", g, "i", i)
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(sink.String(), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	seen := map[[2]int]bool{}
	for _, l := range lines {
		var rec struct{ G, I int }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("a torn line %q: %v", l, err)
		}
		seen[[2]int{rec.G, rec.I}] = true
	}
	if len(seen) != 8*500 {
		t.Fatalf("%d distinct lines, want %d", len(seen), 8*500)
	}
}
