package dukat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

type workClient = grpc.BidiStreamingClient[dukatv1.WorkRequest, dukatv1.WorkResponse]

// workStream is one welcomed Work stream: the attempts it holds and what is to be sent on it.
// The receiving goroutine (serveStream) starts handlers; the sender (send) owns Send, as
// grpc-go wants one sender at a time.
type workStream struct {
	worker         *Worker
	stream         workClient
	ctx            context.Context // ends with the stream: every handler's ctx derives from it
	maxResultBytes int64
	wake           chan struct{} // something to send (capacity 1: pokes coalesce)
	handlers       sync.WaitGroup

	mu        sync.Mutex
	running   map[attemptKey]context.CancelCauseFunc
	results   []*dukatv1.WorkResult
	progress  map[attemptKey]*dukatv1.WorkProgress // the latest per attempt is all that matters
	abandoned bool                                 // the stream is gone: results are for nobody
}

// serveStream says hello, serves one stream until it ends, and returns what ended it: nil
// when the daemon ended it with OK (after a drain, or of its own accord).
func (w *Worker) serveStream(runCtx context.Context, retries *backoff) error {
	ctx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)
	stream, err := w.client.scheduler.Work(ctx)
	if err != nil {
		return err
	}
	hello := &dukatv1.WorkerHello{WorkerId: w.id, Queues: w.queues, MaxInFlight: int32(w.concurrency)}
	if err := stream.Send(&dukatv1.WorkRequest{Kind: &dukatv1.WorkRequest_Hello{Hello: hello}}); err != nil {
		_, err = stream.Recv() // Send only says io.EOF; Recv has the status
		return err
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	welcome := first.GetWelcome()
	interval := welcome.GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		interval = defaultHeartbeat
	}
	s := &workStream{
		worker: w, stream: stream, ctx: ctx, maxResultBytes: welcome.GetMaxResultBytes(),
		wake: make(chan struct{}, 1), running: map[attemptKey]context.CancelCauseFunc{},
		progress: map[attemptKey]*dukatv1.WorkProgress{},
	}
	if retries.retrying() {
		w.logger.Info("dukat: worker serving again", "worker", w.id)
	}
	retries.reset()
	// A daemon that heartbeats too says something every interval: silence past the timeout
	// is a dead stream, whatever the connection under it looks like (a stopped daemon answers
	// keepalive pings neither, and those would take 50 s to tell).
	timeout := welcome.GetHeartbeatTimeout().AsDuration()
	var silence *time.Timer
	if welcome.GetDaemonHeartbeats() && timeout > 0 {
		silence = time.AfterFunc(timeout, func() { cancel(&silentDaemonError{timeout}) })
		defer silence.Stop()
	}
	w.welcomed(s)
	s.take(first)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		s.send(interval)
	}()
	for {
		response, recvErr := stream.Recv()
		if recvErr != nil {
			err = recvErr
			break
		}
		if silence != nil {
			silence.Reset(timeout)
		}
		s.take(response)
	}
	var silent *silentDaemonError
	if errors.As(context.Cause(ctx), &silent) {
		err = silent
	}
	cancel(nil) // the sender and every handler
	<-sent
	w.streamEnded(s.abandon())
	if err == io.EOF {
		return nil
	}
	return err
}

// silentDaemonError ends a stream on which a daemon that heartbeats said nothing for its
// heartbeat timeout.
type silentDaemonError struct{ timeout time.Duration }

func (e *silentDaemonError) Error() string {
	return fmt.Sprintf("the daemon sent nothing for %v, its heartbeat timeout", e.timeout)
}

// take starts the assignments of a response and cancels what it takes back.
func (s *workStream) take(response *dukatv1.WorkResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, assignment := range response.GetAssignments() {
		key := attemptKey{assignment.GetJobId(), assignment.GetTaskId(), assignment.GetAttempt()}
		if _, twice := s.running[key]; twice {
			continue // the same attempt twice: never run it twice
		}
		task := taskFromProto(assignment, s.reportProgress)
		ctx, cancel := context.WithCancelCause(s.ctx)
		s.running[key] = cancel
		s.handlers.Add(1)
		go s.run(ctx, cancel, key, task)
	}
	for _, taken := range response.GetCancels() {
		key := attemptKey{taken.GetJobId(), taken.GetTaskId(), taken.GetAttempt()}
		if cancel, ok := s.running[key]; ok {
			reason := taken.GetReason()
			if reason == "" {
				reason = "cancelled by the daemon"
			}
			cancel(&TaskCancelledError{Reason: reason})
		}
	}
}

// run runs one attempt and queues its result.
func (s *workStream) run(ctx context.Context, cancel context.CancelCauseFunc, key attemptKey, task *Task) {
	defer s.handlers.Done()
	defer cancel(nil)
	if task.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, task.Timeout)
		defer stop()
	}
	result := &dukatv1.WorkResult{JobId: key.jobID, TaskId: key.taskID, Attempt: key.attempt}
	payload, err := s.worker.call(ctx, task)
	switch {
	case err != nil:
		result.Outcome = &dukatv1.WorkResult_Error{Error: workError(err, s.worker.retryable)}
	case s.maxResultBytes > 0 && int64(len(payload)) > s.maxResultBytes:
		result.Outcome = &dukatv1.WorkResult_Error{Error: &dukatv1.WorkError{
			Message: fmt.Sprintf("result of %d bytes is over the daemon's limit of %d", len(payload), s.maxResultBytes),
			Type:    "ResultTooLarge", Retryable: false,
		}}
	default:
		result.Outcome = &dukatv1.WorkResult_Success{Success: &dukatv1.WorkSuccess{Payload: payload}}
	}
	s.mu.Lock()
	delete(s.running, key)
	// Its last progress report stays queued: it goes in the same update as the result, and
	// the daemon applies progress first.
	if !s.abandoned {
		s.results = append(s.results, result)
	}
	s.mu.Unlock()
	s.poke()
}

// call runs the handler; a panic fails the attempt (a bug no retry mends) and is logged.
func (w *Worker) call(ctx context.Context, task *Task) (payload []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.logger.Error("dukat: handler panicked", "worker", w.id, "task", task.String(),
				"panic", p, "stack", string(debug.Stack()))
			err = &WorkError{Message: fmt.Sprint(p), Type: "panic", Retryable: false}
		}
	}()
	return w.handler(ctx, task)
}

func (s *workStream) reportProgress(progress *dukatv1.WorkProgress) {
	key := attemptKey{progress.GetJobId(), progress.GetTaskId(), progress.GetAttempt()}
	s.mu.Lock()
	if _, ok := s.running[key]; !ok {
		s.mu.Unlock()
		return // the attempt ended: a late report says nothing
	}
	s.progress[key] = progress
	s.mu.Unlock()
	s.poke()
}

func (s *workStream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// send sends what ended or progressed since the last update, as soon as there is some (what
// piles up while one update is being sent goes in the next), and an empty update when nothing
// happened for a whole heartbeat interval. Draining, it sends the flag with every update, and
// keeps the stream open (an assignment the daemon sent before it read the flag is ours to run):
// the daemon ends it with OK once we hold nothing. It returns when the stream's context ends
// or a send fails (the receiver then learns why).
func (s *workStream) send(interval time.Duration) {
	heartbeat := time.NewTimer(interval)
	defer heartbeat.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			s.linger()
		case <-heartbeat.C:
		}
		draining := s.worker.isDraining()
		s.mu.Lock()
		results := s.results
		s.results = nil
		progress := make([]*dukatv1.WorkProgress, 0, len(s.progress))
		for _, p := range s.progress {
			progress = append(progress, p)
		}
		clear(s.progress)
		s.mu.Unlock()
		update := &dukatv1.WorkerUpdate{Results: results, Progress: progress, Draining: draining}
		if err := s.stream.Send(&dukatv1.WorkRequest{Kind: &dukatv1.WorkRequest_Update{Update: update}}); err != nil {
			return
		}
		s.worker.completed.Add(int64(len(results)))
		heartbeat.Reset(interval)
	}
}

// batchLinger is how long the sender, once woken, waits for more results, so that they travel
// together: the daemon's cost is per message more than per result (one result per message
// costs it four times as much CPU per task as a batch: bench/dispatch.py), and goroutines end
// one by one, where Python's event loop runs every handler that is ready before its sender.
const batchLinger = 2 * time.Millisecond

// linger waits, at most batchLinger, until no attempt is running or the results of half of
// the worker's concurrency are ready: the daemon gets that much credit back at once, and
// assigns more while the rest run.
func (s *workStream) linger() {
	timer := time.NewTimer(batchLinger)
	defer timer.Stop()
	for {
		s.mu.Lock()
		busy := len(s.running) > 0 && len(s.results) < max(1, s.worker.concurrency/2)
		s.mu.Unlock()
		if !busy {
			return
		}
		select {
		case <-s.wake:
		case <-timer.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// abandon drops what the stream held, once its handlers (cancelled with its context) have
// returned; it returns how many attempts were running or had results not sent yet: the
// daemon took them back.
func (s *workStream) abandon() int {
	s.mu.Lock()
	s.abandoned = true
	lost := len(s.running) + len(s.results)
	s.mu.Unlock()
	s.handlers.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results, s.running = nil, nil
	clear(s.progress)
	return lost
}
