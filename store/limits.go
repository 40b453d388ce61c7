package store

import (
	"errors"
	"fmt"
	"time"
)

// RateLimit is a named token bucket that steps draw on: Units tokens are
// added every Period, and the bucket holds at most Burst. The store keeps
// only the definition; admission keeps the tokens.
type RateLimit struct {
	Name      string
	Units     int64
	Period    time.Duration
	Burst     int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// RateLimitSetParams are the arguments of RateLimitSet.
type RateLimitSetParams struct {
	Name   string
	Units  int64
	Period time.Duration
	Burst  int64
	// At is the creation time of a new limit and the update time of
	// either.
	At time.Time
}

// Validate checks what every driver needs of RateLimitSet's arguments:
// the ranges the tables' constraints enforce. Periods are stored in whole
// milliseconds. The coordinator checks the same with messages for people.
func (p *RateLimitSetParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("RateLimitSet: params are nil")
	case p.Name == "":
		return errors.New("RateLimitSet: name is required")
	case p.Units < 1:
		return fmt.Errorf("RateLimitSet: rate limit %q: units %d must be positive", p.Name, p.Units)
	case p.Period < time.Millisecond || p.Period%time.Millisecond != 0:
		return fmt.Errorf("RateLimitSet: rate limit %q: period %s must be a positive whole number of milliseconds", p.Name, p.Period)
	case p.Burst < 1:
		return fmt.Errorf("RateLimitSet: rate limit %q: burst %d must be at least 1", p.Name, p.Burst)
	}
	return nil
}
