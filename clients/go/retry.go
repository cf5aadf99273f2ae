package dukat

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// RetryPolicy is how a task is retried: MaxAttempts in all, waiting InitialBackoff *
// Multiplier^(n-1) before attempt n+1, capped at MaxBackoff, spread by +/- Jitter (a
// fraction of the wait). Start from Retries(n), which holds the engine's defaults, and change
// what you need: every field is sent as it is, so in a literal a zero backoff is no wait and
// a zero Jitter none (a zero Multiplier is the default, 2).
type RetryPolicy struct {
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	Jitter         float64
}

// Retries is a RetryPolicy of maxAttempts attempts (the first included) with the engine's
// defaults: 1 s doubling to 60 s, jitter 0.2.
func Retries(maxAttempts int) RetryPolicy {
	return RetryPolicy{
		MaxAttempts: maxAttempts, InitialBackoff: time.Second, MaxBackoff: time.Minute,
		Multiplier: 2, Jitter: 0.2,
	}
}

func (p RetryPolicy) toProto() *dukatv1.RetryPolicy {
	jitter := p.Jitter
	return &dukatv1.RetryPolicy{
		MaxAttempts:    int32(p.MaxAttempts),
		InitialBackoff: durationpb.New(p.InitialBackoff),
		MaxBackoff:     durationpb.New(p.MaxBackoff),
		Multiplier:     p.Multiplier,
		Jitter:         &jitter,
	}
}
