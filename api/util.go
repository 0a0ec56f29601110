package api

import (
	"context"
	"errors"
	"net/http"
)

func asMaxBytes(err error, target **http.MaxBytesError) bool { return errors.As(err, target) }

func withoutCancel(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
