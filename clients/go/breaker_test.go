package dukat_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

func TestABreakerOpensOnFailuresAndRefusesWithRetryAfter(t *testing.T) {
	d := newDaemon(t)
	client := d.Dial(t)
	ctx := testContext(t)
	breaker := client.Breaker("payments")
	if _, err := breaker.Configure(ctx, dukat.BreakerConfig{FailureThreshold: 2, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Another process's view of the same breaker: the daemon's, shared.
	other := d.Dial(t).Breaker("payments")

	if err := breaker.Do(ctx, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	down := errors.New("payments are down")
	for range 2 {
		if err := breaker.Do(ctx, func() error { return down }); err != down {
			t.Fatalf("Do gave %v, want fn's error", err)
		}
	}
	called := false
	err := other.Do(ctx, func() error { called = true; return nil })
	var refused *dukat.CircuitBreakerError
	if !errors.As(err, &refused) || called {
		t.Fatalf("Do on an open breaker: %v (fn called: %v)", err, called)
	}
	if refused.Name != "payments" || refused.HalfOpen || refused.RetryAfter <= 50*time.Second || refused.RetryAfter > time.Minute {
		t.Fatalf("refused: %+v", refused)
	}
	status, err := other.Get(ctx)
	if err != nil || status.State != dukat.BreakerOpen || status.Config.FailureThreshold != 2 {
		t.Fatalf("status %+v, %v", status, err)
	}

	if status, err = other.Reset(ctx); err != nil || status.State != dukat.BreakerClosed {
		t.Fatalf("after Reset: %+v, %v", status, err)
	}
	if err := breaker.Do(ctx, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestACancelledCallThroughABreakerCountsNeitherWay(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	breaker := client.Breaker("search")
	if _, err := breaker.Configure(ctx, dukat.BreakerConfig{FailureThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	callCtx, cancel := context.WithCancel(ctx)
	err := breaker.Do(callCtx, func() error {
		cancel() // the caller gave up: this says nothing about the downstream
		return fmt.Errorf("searching: %w", callCtx.Err())
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Do: %v", err)
	}
	status, err := breaker.Get(ctx)
	if err != nil || status.State != dukat.BreakerClosed || status.ConsecutiveFailures != 0 {
		t.Fatalf("after a cancelled call: %+v, %v", status, err)
	}

	permit, err := breaker.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state, err := permit.Failure(ctx, errors.New("timeout")); err != nil || state != dukat.BreakerOpen {
		t.Fatalf("one failure with threshold 1: %v, %v", state, err)
	}
	if _, err := client.Breaker("never-made").Get(ctx); !errors.Is(err, dukat.ErrNotFound) {
		t.Fatalf("an unknown breaker: %v", err)
	}
}
