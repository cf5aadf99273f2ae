package dukat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Handler runs one attempt of a dispatch task and returns its result, passed to the task's
// dependents as an UpstreamResult. ctx ends when the daemon takes the attempt back (the task
// or its job cancelled: context.Cause is a *TaskCancelledError), when the attempt's Timeout
// passes, when the stream to the daemon is lost and when the Worker stops: return soon then.
// An error fails the attempt (see WorkError); a panic fails it too, not retryable.
type Handler func(ctx context.Context, task *Task) ([]byte, error)

// WorkerOptions configures a Worker.
type WorkerOptions struct {
	// Queues the worker serves (DispatchAction queues); at least one.
	Queues []string
	// Concurrency is how many attempts run at once (default 1).
	Concurrency int
	// ID names the worker in the daemon's logs and metrics (default hostname-pid).
	ID string
	// Retryable says whether a handler's error may be retried by the task's policy (default:
	// every error but NonRetryable ones and *WorkError values that say otherwise).
	Retryable func(error) bool
	// Reconnect is how long to wait between tries to reach a daemon after the stream broke
	// (default DefaultWorkerReconnect: 100 ms doubling to 5 s, jittered, never giving up).
	Reconnect *Reconnect
}

// defaultHeartbeat is the interval between heartbeats when the welcome names none.
const defaultHeartbeat = 5 * time.Second

// fatalCodes end a worker: a new stream would get them again. Every other status (a daemon
// draining or gone, missed heartbeats, a call cut at shutdown) is retried.
var fatalCodes = []codes.Code{
	codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.Unimplemented,
}

// errForced is why Shutdown stops a Run whose drain did not end in time.
var errForced = errors.New("dukat: the worker's shutdown ran out of time")

// Worker serves the dispatch tasks of its queues over the daemon's Work stream, Concurrency
// at once: Run serves (through daemon restarts), Shutdown drains and stops.
//
// One stream at a time: a hello, the daemon's welcome, then assignments and cancels come in
// while results, progress and heartbeats go out, batched both ways; an empty update goes
// when nothing happened for the welcome's heartbeat interval.
//
// A worker outlives its daemon, as the Python client's does: when the stream ends or breaks
// (the daemon drains or restarts, the connection is lost, or the daemon is silent: nothing
// heard for the welcome's heartbeat timeout from a daemon that heartbeats, else a keepalive
// ping unanswered), the daemon has taken the worker's attempts back and runs them again (an
// interruption, counted against the task's MaxInterruptions, not its RetryPolicy), so the
// handlers still running are cancelled, their results dropped, and the worker says hello
// again after a jittered backoff (WorkerOptions.Reconnect), from the start once a daemon
// welcomes it. A status no new stream can change (a wrong token, a refused hello, a daemon
// serving no workers) ends Run with its *Error.
type Worker struct {
	client      *Client
	handler     Handler
	queues      []string
	concurrency int
	id          string
	retryable   func(error) bool
	reconnect   Reconnect
	logger      *slog.Logger
	completed   atomic.Int64

	mu        sync.Mutex
	started   bool
	draining  bool
	stopRun   context.CancelCauseFunc
	stopIdle  context.CancelFunc // wakes Run from a wait between streams
	current   *workStream        // the welcomed stream; nil between streams
	connected chan struct{}      // closed while a stream is welcomed
	lost      int                // attempts given back by streams lost while draining
	done      chan struct{}      // closed when Run returns
}

// NewWorker is a worker serving options.Queues with handler; call Run to serve.
func (c *Client) NewWorker(handler Handler, options WorkerOptions) (*Worker, error) {
	if handler == nil {
		return nil, errors.New("dukat: a Worker needs a Handler")
	}
	if len(options.Queues) == 0 || slices.Contains(options.Queues, "") {
		return nil, fmt.Errorf("dukat: a Worker serves at least one named queue, not %q", options.Queues)
	}
	concurrency := options.Concurrency
	if concurrency == 0 {
		concurrency = 1
	}
	if concurrency < 1 || concurrency > math.MaxInt32 {
		return nil, fmt.Errorf("dukat: Concurrency must be between 1 and %d, not %d", math.MaxInt32, options.Concurrency)
	}
	reconnect := DefaultWorkerReconnect
	if options.Reconnect != nil {
		reconnect = *options.Reconnect
	}
	if err := reconnect.validate(); err != nil {
		return nil, err
	}
	id := options.ID
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	retryable := options.Retryable
	if retryable == nil {
		retryable = func(error) bool { return true }
	}
	return &Worker{
		client: c, handler: handler, queues: slices.Clone(options.Queues), concurrency: concurrency,
		id: id, retryable: retryable, reconnect: reconnect, logger: c.logger,
		connected: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

// ID is the worker's name.
func (w *Worker) ID() string { return w.id }

// Completed is how many attempts' results the worker has sent.
func (w *Worker) Completed() int64 { return w.completed.Load() }

// Run serves until ctx ends (a hard stop: handlers are cancelled and their attempts given
// back, to run again as interrupted; Run returns ctx's cause) or Shutdown has drained it
// (nil). It returns an *Error for a status no new stream can change, and ErrUnavailable when
// the Reconnect policy gives up. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("dukat: Worker.Run was called already; a Worker runs once")
	}
	w.started = true
	runCtx, stopRun := context.WithCancelCause(ctx)
	idleCtx, stopIdle := context.WithCancel(runCtx)
	w.stopRun, w.stopIdle = stopRun, stopIdle
	w.mu.Unlock()
	defer close(w.done)
	defer stopRun(nil)
	defer stopIdle()

	retries := newBackoff(w.reconnect)
	for {
		if w.isDraining() {
			return nil
		}
		err := w.serveStream(runCtx, retries)
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case w.isDraining() || context.Cause(runCtx) == errForced:
			return nil
		case slices.Contains(fatalCodes, status.Code(err)):
			return callError(runCtx, err)
		}
		lost := "the daemon ended the stream"
		if err != nil {
			lost = err.Error()
		}
		// Once per outage at WARN: a daemon away for minutes is one line, not hundreds.
		level := slog.LevelWarn
		if retries.retrying() {
			level = slog.LevelDebug
		}
		w.logger.Log(ctx, level, "dukat: worker has no stream; reconnecting", "worker", w.id, "reason", lost)
		again, waitErr := retries.wait(idleCtx)
		if waitErr != nil {
			continue // stopped or draining: the checks above say which
		}
		if !again {
			return &Error{code: codes.Unavailable, message: fmt.Sprintf(
				"no daemon at %s took the worker back within the reconnect policy", w.client.address)}
		}
	}
}

// Shutdown drains the worker: it tells the daemon it is draining (WorkerUpdate.draining), so
// that nothing new is assigned to it, lets the handlers running finish (an assignment already
// on its way included) and sends their results; the daemon ends the stream with OK once the
// worker holds nothing, and Run returns nil. Nothing held is lost. If ctx ends first, the
// rest is a hard stop (handlers cancelled, their attempts given back to run again as
// interrupted) and Shutdown returns ctx's error; an error also says when the stream was lost
// while draining. A worker not running, or between streams, just stops.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	w.draining = true
	started, current, stopIdle := w.started, w.current, w.stopIdle
	w.mu.Unlock()
	if !started {
		return nil // Run will return at once
	}
	if stopIdle != nil {
		stopIdle()
	}
	if current != nil {
		current.poke() // the draining flag goes out now
	}
	select {
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.lost > 0 {
			return fmt.Errorf("dukat: the stream was lost while draining; %d attempts went back to the daemon", w.lost)
		}
		return nil
	case <-ctx.Done():
		w.stopRun(errForced)
		<-w.done
		return ctx.Err()
	}
}

// WaitConnected waits until the worker has a stream the daemon welcomed (it may be lost
// again at any time), or ctx ends, or Run returns (an error then).
func (w *Worker) WaitConnected(ctx context.Context) error {
	w.mu.Lock()
	connected := w.connected
	w.mu.Unlock()
	select {
	case <-connected:
		return nil
	case <-w.done:
		return errors.New("dukat: the worker stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether the worker has a stream the daemon welcomed now.
func (w *Worker) Connected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current != nil
}

func (w *Worker) isDraining() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.draining
}

// welcomed: s is the stream now; a drain asked for before it goes out on it at once.
func (w *Worker) welcomed(s *workStream) {
	w.mu.Lock()
	w.current = s
	close(w.connected)
	draining := w.draining
	w.mu.Unlock()
	if draining {
		s.poke()
	}
}

// streamEnded: no stream now; lost attempts count against a drain.
func (w *Worker) streamEnded(lost int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.current = nil
	w.connected = make(chan struct{})
	if w.draining {
		w.lost += lost
	}
}

func (w *Worker) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	state := "not connected"
	if w.current != nil {
		state = "connected"
	}
	return fmt.Sprintf("worker %s queues:%v concurrency:%d %s", w.id, w.queues, w.concurrency, state)
}
