package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cardrail/cardrail/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv(t *testing.T) {
	t.Run("nothing set gives the sandbox defaults", func(t *testing.T) {
		c, err := config.FromEnv(env(nil))
		if err != nil || !reflect.DeepEqual(c, config.Default()) || c.DatabaseURL != "sqlite:cardrail.db" || c.RateLimit != 50 || c.HoldWindow != 168*time.Hour || c.ProductionEnabled() {
			t.Fatalf("%+v, %v", c, err)
		}
	})
	t.Run("values are read and typed", func(t *testing.T) {
		c, err := config.FromEnv(env(map[string]string{
			"CARDRAIL_ADDR": "0.0.0.0:9000", "CARDRAIL_DATABASE_URL": "postgres://db/cardrail", "CARDRAIL_RATE_LIMIT": "0",
			"CARDRAIL_HOLD_WINDOW": "2h", "CARDRAIL_WEBHOOK_ALLOW_PRIVATE": "true", "CARDRAIL_SANDBOX_JWT_SECRET": " spaced secret of thirty-two bytes ",
			"CARDRAIL_PRODUCTION_JWKS_URL": "https://idp/jwks", "CARDRAIL_AUTH_EXECUTORS": "3",
			"CARDRAIL_WEBHOOK_RETRY_SCHEDULE": "1s, 1m,2h", "CARDRAIL_REQUEST_TIMEOUT": "3s",
		}))
		if err != nil || c.Addr != "0.0.0.0:9000" || c.RateLimit != 0 || c.HoldWindow != 2*time.Hour || !c.WebhookAllowPrivate ||
			c.SandboxJWTSecret != " spaced secret of thirty-two bytes " || !c.ProductionEnabled() || c.AuthExecutors != 3 || c.RequestTimeout != 3*time.Second ||
			!reflect.DeepEqual(c.WebhookRetrySchedule, []time.Duration{time.Second, time.Minute, 2 * time.Hour}) {
			t.Fatalf("%+v, %v", c, err)
		}
	})
	for name, vars := range map[string]map[string]string{
		"a negative rate limit":             {"CARDRAIL_RATE_LIMIT": "-1"},
		"a hold window without unit":        {"CARDRAIL_HOLD_WINDOW": "168"},
		"a non-boolean switch":              {"CARDRAIL_WEBHOOK_ALLOW_PRIVATE": "maybe"},
		"an unknown database":               {"CARDRAIL_DATABASE_URL": "mysql://db"},
		"zero executors":                    {"CARDRAIL_AUTH_EXECUTORS": "0"},
		"a rate limit of NaN":               {"CARDRAIL_RATE_LIMIT": "NaN"},
		"an infinite rate limit":            {"CARDRAIL_RATE_LIMIT": "+Inf"},
		"an unknown log level":              {"CARDRAIL_LOG_LEVEL": "verbose"},
		"a SQLite URL without a path":       {"CARDRAIL_DATABASE_URL": "sqlite:"},
		"a short sandbox secret":            {"CARDRAIL_SANDBOX_JWT_SECRET": "short"},
		"a retry schedule with a bad wait":  {"CARDRAIL_WEBHOOK_RETRY_SCHEDULE": "5s,soon"},
		"a retry schedule with a zero wait": {"CARDRAIL_WEBHOOK_RETRY_SCHEDULE": "5s,0s"},
		"a production JWKS over http":       {"CARDRAIL_PRODUCTION_JWKS_URL": "http://keys.example.com/jwks.json"},
		"a misspelt scheme":                 {"CARDRAIL_DATABASE_URL": "postgress://u:hunter2@db/x"},
		"a request timeout without unit":    {"CARDRAIL_REQUEST_TIMEOUT": "20"},
		"a request timeout past 20 s":       {"CARDRAIL_REQUEST_TIMEOUT": "21s"},
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			_, err := config.FromEnv(env(vars))
			if err == nil {
				t.Fatal("accepted")
			}
			for k := range vars {
				if !strings.HasPrefix(err.Error(), k+": ") {
					t.Errorf("%v does not name %s first", err, k)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%v shows the password", err)
			}
		})
	}
}

func TestUnknown(t *testing.T) {
	got := config.Unknown([]string{
		"PATH=/usr/bin", "CARDRAIL_ADDR=:8080", "CARDRAIL_RATELIMIT=0", "CARDRAIL_TEST_POSTGRES_URL=postgres://x",
		"CARDRAIL_PROPERTY_RUNS=100", "CARDRAIL_SOMETHING_ELSE_ENTIRELY=1", "CARDRAIL_REQUEST_TIMEOUT=5s",
	})
	want := []string{
		"CARDRAIL_RATELIMIT is not a setting and is ignored; did you mean CARDRAIL_RATE_LIMIT?",
		"CARDRAIL_SOMETHING_ELSE_ENTIRELY is not a setting and is ignored",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
