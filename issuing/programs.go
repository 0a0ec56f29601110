package issuing

import (
	"context"

	"github.com/cardrail/cardrail"
)

// Programs lists the enabled programs of the caller's mode open in the
// caller's market.
func (s *Service) Programs(ctx context.Context, c cardrail.Caller) ([]cardrail.Program, error) {
	all, err := s.store.Programs(ctx, c.Livemode)
	if err != nil {
		return nil, err
	}
	out := []cardrail.Program{}
	for _, p := range all {
		if p.Enabled() && p.OpenIn(c.Country) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Program returns one program the caller can see (enabled and open in the
// caller's market); any other is not found.
func (s *Service) Program(ctx context.Context, c cardrail.Caller, code string) (*cardrail.Program, error) {
	p, err := s.store.Program(ctx, c.Livemode, code)
	if err == nil && (!p.Enabled() || !p.OpenIn(c.Country)) {
		err = cardrail.ErrNoRows
	}
	return lookup(p, err, "program", code)
}
