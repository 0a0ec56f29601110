package webhook_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cardrail/cardrail/webhook"
)

// The README's configuration table gives the default retry schedule; an
// operator who copies it into CARDRAIL_WEBHOOK_RETRY_SCHEDULE must get the
// schedule the worker uses, and SPEC §9 asks that it span at least 24 h.
func TestDefaultScheduleAsDocumented(t *testing.T) {
	var total time.Duration
	parts := make([]string, len(webhook.DefaultSchedule))
	for i, d := range webhook.DefaultSchedule {
		total += d
		switch {
		case d%time.Hour == 0:
			parts[i] = fmt.Sprintf("%dh", d/time.Hour)
		case d%time.Minute == 0:
			parts[i] = fmt.Sprintf("%dm", d/time.Minute)
		default:
			parts[i] = fmt.Sprintf("%ds", d/time.Second)
		}
	}
	if total < 24*time.Hour {
		t.Fatalf("the default schedule spans %s, less than 24 h", total)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := "| `" + strings.Join(parts, ",") + "` |"
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `CARDRAIL_WEBHOOK_RETRY_SCHEDULE` |") {
			if !strings.HasSuffix(line, want) {
				t.Fatalf("README gives the default as\n%s\nwant it to end %s", line, want)
			}
			return
		}
	}
	t.Fatal("README has no CARDRAIL_WEBHOOK_RETRY_SCHEDULE row")
}
