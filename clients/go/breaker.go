package dukat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// Breaker is one of the daemon's named circuit breakers, shared by every process on the
// host, in any language (CircuitBreakerService). Each decision is a call to the daemon:
// Acquire before the guarded call, then the Permit's Success, Failure or Release; Do does all
// of it around a function.
type Breaker struct {
	client *Client
	name   string
}

// Breaker is the daemon's breaker name (created there with its defaults on first Acquire).
func (c *Client) Breaker(name string) *Breaker { return &Breaker{client: c, name: name} }

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.name }

// BreakerConfig is how a breaker decides; a zero field takes the engine's default.
type BreakerConfig struct {
	// FailureThreshold: consecutive failures that open a closed breaker (default 5).
	FailureThreshold int
	// Timeout: how long an open breaker refuses calls before trial calls (default 60 s).
	Timeout time.Duration
	// HalfOpenMaxCalls: trial calls let through at once while half-open (default 1).
	HalfOpenMaxCalls int
	// SuccessThreshold: trial successes that close a half-open breaker (default 1).
	SuccessThreshold int
	// FailureRateThreshold: also open when this fraction, in (0, 1], of the last WindowSize
	// calls failed; 0: no failure-rate rule.
	FailureRateThreshold float64
	WindowSize           int
}

// BreakerStatus is a breaker at one moment.
type BreakerStatus struct {
	Name   string
	State  BreakerState
	Config BreakerConfig // every default filled in
	// ConsecutiveFailures counted while closed.
	ConsecutiveFailures int
	// RetryAfter: while OPEN, how long until trial calls are let through.
	RetryAfter time.Duration
	// Generation is bumped by every state change and reconfiguration.
	Generation int64
}

// Get is the breaker now; ErrNotFound if the daemon has none of that name.
func (b *Breaker) Get(ctx context.Context) (BreakerStatus, error) {
	response, err := call(ctx, b.client, true, b.client.breakers.GetBreaker,
		&dukatv1.GetBreakerRequest{Name: b.name})
	return breakerFromProto(response.GetBreaker()), err
}

// Configure sets the breaker's whole configuration (zero fields take the defaults, not the
// old values), creating it if need be; its state is kept, its counters start over.
func (b *Breaker) Configure(ctx context.Context, config BreakerConfig) (BreakerStatus, error) {
	request := &dukatv1.ConfigureBreakerRequest{Name: b.name, Config: &dukatv1.CircuitBreakerConfig{
		FailureThreshold: int32(config.FailureThreshold), HalfOpenMaxCalls: int32(config.HalfOpenMaxCalls),
		SuccessThreshold: int32(config.SuccessThreshold), FailureRateThreshold: config.FailureRateThreshold,
		WindowSize: int32(config.WindowSize),
	}}
	if config.Timeout != 0 {
		request.Config.Timeout = durationpb.New(config.Timeout)
	}
	response, err := call(ctx, b.client, true, b.client.breakers.ConfigureBreaker, request)
	return breakerFromProto(response.GetBreaker()), err
}

// Reset closes the breaker and clears its counters, for every process; ErrNotFound if there
// is none of that name.
func (b *Breaker) Reset(ctx context.Context) (BreakerStatus, error) {
	response, err := call(ctx, b.client, true, b.client.breakers.ResetBreaker,
		&dukatv1.ResetBreakerRequest{Name: b.name})
	return breakerFromProto(response.GetBreaker()), err
}

// Permit is the daemon's leave to make one call through a breaker: report how the call went
// with exactly one of Success, Failure or Release.
type Permit struct {
	breaker    *Breaker
	generation int64
}

// Acquire asks to make one call. Refused, it is a *CircuitBreakerError (with RetryAfter
// when open): do not make the call, and report nothing. Not retried: a lost answer may have
// taken one of a half-open breaker's trial slots.
func (b *Breaker) Acquire(ctx context.Context) (*Permit, error) {
	response, err := call(ctx, b.client, false, b.client.breakers.Acquire, &dukatv1.AcquireRequest{Name: b.name})
	if err != nil {
		return nil, err
	}
	if !response.GetAllowed() {
		return nil, &CircuitBreakerError{
			Name: b.name, RetryAfter: response.GetRetryAfter().AsDuration(),
			HalfOpen: BreakerState(response.GetState()) == BreakerHalfOpen,
		}
	}
	return &Permit{breaker: b, generation: response.GetPermit()}, nil
}

// Success reports that the allowed call succeeded; the breaker's state after it.
func (p *Permit) Success(ctx context.Context) (BreakerState, error) {
	return p.record(ctx, dukatv1.CallOutcome_CALL_OUTCOME_SUCCESS, "")
}

// Failure reports that the allowed call failed with err (kept, in words, in the reason of
// a transition it causes).
func (p *Permit) Failure(ctx context.Context, err error) (BreakerState, error) {
	text := ""
	if err != nil {
		text = fmt.Sprintf("%s: %v", errorType(err), err)
	}
	return p.record(ctx, dukatv1.CallOutcome_CALL_OUTCOME_FAILURE, truncate(text, 1000))
}

// Release gives the permit back without counting either way: the call was not made, or its
// outcome says nothing about the downstream (it was cancelled).
func (p *Permit) Release(ctx context.Context) (BreakerState, error) {
	return p.record(ctx, dukatv1.CallOutcome_CALL_OUTCOME_RELEASE, "")
}

func (p *Permit) record(ctx context.Context, outcome dukatv1.CallOutcome, text string) (BreakerState, error) {
	request := &dukatv1.RecordRequest{Name: p.breaker.name, Permit: p.generation, Outcome: outcome, Error: text}
	// Not retried: counting one failure twice could open the breaker.
	response, err := call(ctx, p.breaker.client, false, p.breaker.client.breakers.Record, request)
	return BreakerState(response.GetState()), err
}

// recordTimeout bounds telling the daemon an outcome after the caller's context ended.
const recordTimeout = 5 * time.Second

// Do runs fn through the breaker: refused, it returns the *CircuitBreakerError without
// calling fn; else fn's error, after reporting it (nil a success, an error wrapping
// context.Canceled a release, which counts neither way, any other error a failure; a panic
// releases and goes on). An outcome the daemon cannot be told is logged, not returned: fn's
// outcome stays the caller's.
func (b *Breaker) Do(ctx context.Context, fn func() error) error {
	permit, err := b.Acquire(ctx)
	if err != nil {
		return err
	}
	// The caller's context may end with fn: the daemon must still hear how it went.
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	returned := false
	defer func() {
		if !returned { // fn panicked: its outcome says nothing about the downstream
			b.logRecord(permit.Release(recordCtx))
		}
	}()
	err = fn()
	returned = true
	switch {
	case err == nil:
		b.logRecord(permit.Success(recordCtx))
	case errors.Is(err, context.Canceled):
		b.logRecord(permit.Release(recordCtx))
	default:
		b.logRecord(permit.Failure(recordCtx, err))
	}
	return err
}

func (b *Breaker) logRecord(_ BreakerState, err error) {
	if err != nil {
		b.client.logger.Warn("dukat: breaker outcome not recorded", "breaker", b.name, "error", err)
	}
}

func breakerFromProto(breaker *dukatv1.CircuitBreaker) BreakerStatus {
	config := breaker.GetConfig()
	return BreakerStatus{
		Name: breaker.GetName(), State: BreakerState(breaker.GetState()),
		Config: BreakerConfig{
			FailureThreshold: int(config.GetFailureThreshold()), Timeout: config.GetTimeout().AsDuration(),
			HalfOpenMaxCalls: int(config.GetHalfOpenMaxCalls()), SuccessThreshold: int(config.GetSuccessThreshold()),
			FailureRateThreshold: config.GetFailureRateThreshold(), WindowSize: int(config.GetWindowSize()),
		},
		ConsecutiveFailures: int(breaker.GetConsecutiveFailures()),
		RetryAfter:          breaker.GetRetryAfter().AsDuration(),
		Generation:          breaker.GetGeneration(),
	}
}
