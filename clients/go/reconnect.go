package dukat

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reconnect says how a client rides out a daemon that is briefly gone (restarting, draining,
// a new socket): calls safe to repeat are tried again after UNAVAILABLE (Submit with its
// request id, reads, Cancel, a Watch resumed from its last sequence), and a Worker says hello
// again. Each wait is jittered (between half and all of it) so that the many clients of a
// restarted daemon do not come back in step.
type Reconnect struct {
	// InitialBackoff is the wait before the first retry.
	InitialBackoff time.Duration
	// MaxBackoff is the longest wait between two tries.
	MaxBackoff time.Duration
	// Multiplier is how much each wait grows over the previous one, at least 1.
	Multiplier float64
	// GiveUpAfter is how long to go on without reaching the daemon before the call fails
	// with ErrUnavailable: 0 does not retry at all, Forever never gives up.
	GiveUpAfter time.Duration
}

// Forever as Reconnect.GiveUpAfter never gives up.
const Forever time.Duration = math.MaxInt64

// DefaultReconnect is how calls retry unless WithReconnect says otherwise (the Python
// client's Reconnect()): 50 ms doubling to 2 s, giving up after 30 s.
var DefaultReconnect = Reconnect{
	InitialBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, Multiplier: 2,
	GiveUpAfter: 30 * time.Second,
}

// DefaultWorkerReconnect is how a Worker comes back unless WorkerOptions.Reconnect says
// otherwise (the Python client's WORKER_RECONNECT): 100 ms doubling to 5 s, never giving up.
var DefaultWorkerReconnect = Reconnect{
	InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2,
	GiveUpAfter: Forever,
}

func (r Reconnect) validate() error {
	if r.InitialBackoff < 0 || r.InitialBackoff > r.MaxBackoff {
		return fmt.Errorf("dukat: Reconnect needs 0 <= InitialBackoff <= MaxBackoff, not %v and %v",
			r.InitialBackoff, r.MaxBackoff)
	}
	if !(r.Multiplier >= 1) {
		return fmt.Errorf("dukat: Reconnect.Multiplier must be at least 1, not %v", r.Multiplier)
	}
	if r.GiveUpAfter < 0 {
		return fmt.Errorf("dukat: Reconnect.GiveUpAfter must be 0 or more, not %v", r.GiveUpAfter)
	}
	return nil
}

// backoff is one run of retries under a Reconnect.
type backoff struct {
	policy  Reconnect
	started time.Time // zero until the first wait: no outage being ridden out
	next    time.Duration
}

func newBackoff(policy Reconnect) *backoff {
	return &backoff{policy: policy, next: policy.InitialBackoff}
}

// retrying is true from the first wait until a reset: an outage is being ridden out.
func (b *backoff) retrying() bool { return !b.started.IsZero() }

// reset: the daemon answered; the next outage starts its own count.
func (b *backoff) reset() {
	b.started = time.Time{}
	b.next = b.policy.InitialBackoff
}

// wait sleeps before the next try and reports true, or false when the policy says to give
// up; ctx's error if it ends first.
func (b *backoff) wait(ctx context.Context) (bool, error) {
	now := time.Now()
	if b.started.IsZero() {
		b.started = now
	}
	elapsed := now.Sub(b.started)
	limit := b.policy.GiveUpAfter
	if elapsed >= limit {
		return false, nil
	}
	delay := time.Duration(float64(b.next) * (0.5 + rand.Float64()/2))
	delay = min(delay, limit-elapsed)
	b.next = time.Duration(min(float64(b.policy.MaxBackoff), float64(b.next)*b.policy.Multiplier))
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// retry is true, after the policy's wait, when the failed call may be made again: it was
// UNAVAILABLE and the policy has not given up. Otherwise it is false with the error to
// return (callError's, or ctx's when it ended during the wait).
func (b *backoff) retry(ctx context.Context, err error) (bool, error) {
	if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
		again, waitErr := b.wait(ctx)
		if waitErr != nil {
			return false, waitErr
		}
		if again {
			return true, nil
		}
	}
	return false, callError(ctx, err)
}
