package dukat_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

// shout upper-cases its payload after the payloads of its upstreams, and says so.
func shout(ctx context.Context, task *dukat.Task) ([]byte, error) {
	if err := task.ReportProgress(0.5, "shouting"); err != nil {
		return nil, err
	}
	var words [][]byte
	for _, upstream := range task.UpstreamResults {
		words = append(words, upstream.Payload)
	}
	words = append(words, bytes.ToUpper(task.Payload))
	return bytes.Join(words, []byte(" ")), nil
}

func newWorker(t *testing.T, client *dukat.Client, handler dukat.Handler, options dukat.WorkerOptions) *dukat.Worker {
	t.Helper()
	worker, err := client.NewWorker(handler, options)
	if err != nil {
		t.Fatal(err)
	}
	return worker
}

func TestAWorkerServesAQueueWithProgressAndUpstreamResults(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	worker := newWorker(t, client, shout, dukat.WorkerOptions{Queues: []string{"shout"}, Concurrency: 4})
	serve(t, worker)

	job, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("hello", "shout", []byte("hello")),
		dukat.Dispatch("world", "shout", []byte("world")).DependsOn("hello").ContentType("text/plain"),
	))
	if err != nil {
		t.Fatal(err)
	}
	var progress []string
	for event, err := range job.Watch(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := event.(*dukat.TaskProgress); ok {
			progress = append(progress, fmt.Sprintf("%s %v %s", e.TaskID, e.Fraction, e.Message))
		}
	}
	final, err := job.Wait(ctx)
	if err != nil || final.State != dukat.JobSucceeded {
		t.Fatalf("job: %+v, %v", final, err)
	}
	world, _ := final.Task("world")
	if result, ok := world.Result.(*dukat.DispatchResult); !ok || string(result.Payload) != "HELLO WORLD" {
		t.Fatalf("world's result %#v", world.Result)
	}
	if strings.Join(progress, ", ") != "hello 0.5 shouting, world 0.5 shouting" {
		t.Fatalf("progress events: %q", progress)
	}
	if worker.Completed() != 2 {
		t.Fatalf("the worker completed %d attempts", worker.Completed())
	}
}

func TestAHandlersErrorFailsTheAttemptRetryableOrNot(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	var calls sync.Map // task id -> *atomic.Int32
	handler := func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		count, _ := calls.LoadOrStore(task.TaskID, new(atomic.Int32))
		count.(*atomic.Int32).Add(1)
		switch task.TaskID {
		case "flaky":
			if task.Attempt < 3 {
				return nil, errors.New("not yet")
			}
			return []byte("at last"), nil
		case "hopeless":
			return nil, dukat.NonRetryable(fmt.Errorf("bad input: %w", errors.ErrUnsupported))
		}
		panic("a bug")
	}
	serve(t, newWorker(t, client, handler, dukat.WorkerOptions{Queues: []string{"q"}, Concurrency: 3}))
	quick := dukat.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("flaky", "q", nil).Retry(quick),
		dukat.Dispatch("hopeless", "q", nil).Retry(quick),
		dukat.Dispatch("buggy", "q", nil).Retry(quick),
	))
	if err != nil {
		t.Fatal(err)
	}
	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"flaky":    "SUCCEEDED 3  <nil>",
		"hopeless": "FAILED 1 error: bad input: unsupported operation &{error bad input: unsupported operation 0 0 [] []}",
		"buggy":    "FAILED 1 panic: a bug &{panic a bug 0 0 [] []}",
	}
	for _, task := range final.Tasks {
		got := fmt.Sprintf("%s %d %s %v", task.State, task.Attempts, task.Error, task.Failure)
		if got != want[task.ID] {
			t.Errorf("task %s: %q, want %q", task.ID, got, want[task.ID])
		}
	}
}

func TestAHandlerSeesTheDaemonsCancelAndItsTimeoutThroughCtx(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	started := make(chan string, 2)
	causes := make(chan string, 2)
	handler := func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		started <- task.TaskID
		<-ctx.Done()
		causes <- task.TaskID + ": " + context.Cause(ctx).Error()
		return nil, context.Cause(ctx)
	}
	serve(t, newWorker(t, client, handler, dukat.WorkerOptions{Queues: []string{"q"}, Concurrency: 2}))

	job, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("cancelled", "q", nil),
		dukat.Dispatch("slow", "q", nil).Timeout(200*time.Millisecond),
	))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	<-started
	if _, err := job.Cancel(ctx, "enough", "cancelled"); err != nil {
		t.Fatal(err)
	}
	seen := []string{<-causes, <-causes}
	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(seen, "; ")
	if !strings.Contains(joined, "cancelled: dukat: the daemon took the attempt back") ||
		!strings.Contains(joined, "slow: ") {
		t.Fatalf("the handlers' contexts ended with %q", joined)
	}
	cancelled, _ := final.Task("cancelled")
	slow, _ := final.Task("slow")
	if cancelled.State != dukat.TaskCancelled || slow.State != dukat.TaskFailed ||
		!strings.Contains(slow.Error, "timed out") {
		t.Fatalf("cancelled: %s %q; slow: %s %q", cancelled.State, cancelled.Error, slow.State, slow.Error)
	}
}

func TestAWorkerComesBackAfterADaemonRestart(t *testing.T) {
	d := newDaemon(t, journaled(), flags("--shutdown-grace", "100ms"))
	client := d.Dial(t)
	ctx := testContext(t)
	firstAttempt := make(chan struct{}, 2)
	handler := func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		if task.Attempt == 1 {
			firstAttempt <- struct{}{}
			<-ctx.Done() // the stream is lost under it: the daemon takes the attempt back
			return nil, ctx.Err()
		}
		return []byte(fmt.Sprintf("attempt %d", task.Attempt)), nil
	}
	worker := newWorker(t, client, handler, dukat.WorkerOptions{Queues: []string{"q"}, Concurrency: 2})
	serve(t, worker)
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("again", "q", nil),
		dukat.Dispatch("once", "q", nil).MaxInterruptions(0), // runs at most once
	))
	if err != nil {
		t.Fatal(err)
	}
	<-firstAttempt
	<-firstAttempt

	d.Restart(t)

	final, err := job.Wait(ctx) // the worker is back and runs attempt 2 of "again"
	if err != nil {
		t.Fatal(err)
	}
	again, _ := final.Task("again")
	once, _ := final.Task("once")
	if again.State != dukat.TaskSucceeded || again.Attempts != 2 || again.Interruptions != 1 ||
		string(again.Result.(*dukat.DispatchResult).Payload) != "attempt 2" {
		t.Fatalf("again: %+v", again)
	}
	if once.State != dukat.TaskFailed || once.Attempts != 1 || once.Interruptions != 1 {
		t.Fatalf("once, which may not run twice: %+v", once)
	}
}

func TestShutdownDrainsMidJobAndLosesNothing(t *testing.T) {
	d := newDaemon(t)
	client := d.Dial(t)
	ctx := testContext(t)
	release := make(chan struct{})
	var held atomic.Int32
	var ran sync.Map // task id -> worker
	handler := func(name string) dukat.Handler {
		return func(ctx context.Context, task *dukat.Task) ([]byte, error) {
			if _, twice := ran.LoadOrStore(task.TaskID, name); twice {
				return nil, fmt.Errorf("task %s ran twice", task.TaskID)
			}
			if name == "draining" {
				held.Add(1)
				<-release
			}
			return []byte(name), nil
		}
	}
	draining := newWorker(t, client, handler("draining"), dukat.WorkerOptions{Queues: []string{"q"}, Concurrency: 2})
	run := serve(t, draining)
	var tasks []dukat.TaskSpec
	for i := range 6 {
		tasks = append(tasks, dukat.Dispatch(fmt.Sprintf("t%d", i), "q", nil))
	}
	job, err := client.Submit(ctx, dukat.Job(tasks...))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker holds two attempts", func() bool { return held.Load() == 2 })

	shutdown := make(chan error, 1)
	go func() { shutdown <- draining.Shutdown(ctx) }()
	// The held attempts end once the daemon knows the worker drains: results that came
	// before would free slots for more, which the worker would run too.
	eventually(t, "the daemon hears the worker drains", func() bool {
		return strings.Contains(d.Log(), "is draining: 2 attempts to finish")
	})
	close(release)
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := run.Wait(); err != nil {
		t.Fatalf("Run after Shutdown: %v", err)
	}
	if draining.Completed() != 2 {
		t.Fatalf("the draining worker completed %d attempts, want the 2 it held", draining.Completed())
	}

	serve(t, newWorker(t, client, handler("next"), dukat.WorkerOptions{Queues: []string{"q"}, Concurrency: 4}))
	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range final.Tasks {
		if task.State != dukat.TaskSucceeded || task.Attempts != 1 {
			t.Errorf("task %s: %s after %d attempts (%s)", task.ID, task.State, task.Attempts, task.Error)
		}
	}
}

func TestAWorkerWhoseDaemonWentSilentSaysHelloAgain(t *testing.T) {
	// A stopped daemon keeps its connections open and answers nothing, keepalive pings
	// neither: only the daemon's own heartbeats tell the worker, within its heartbeat timeout
	// rather than the connection's keepalive (30 s, then 20 s for the ack).
	d := newDaemon(t, flags("--worker-heartbeat-interval", "100ms", "--worker-heartbeat-timeout", "1s"))
	client := d.Dial(t)
	ctx := testContext(t)
	holding := make(chan struct{})
	handler := func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		if task.Attempt == 1 {
			close(holding)
			<-ctx.Done() // cancelled when the worker gives the stream up
			return nil, ctx.Err()
		}
		return []byte("second"), nil
	}
	worker := newWorker(t, client, handler, dukat.WorkerOptions{Queues: []string{"q"}})
	serve(t, worker)
	job, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("held", "q", nil)))
	if err != nil {
		t.Fatal(err)
	}
	<-holding

	d.Signal(t, syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			d.Signal(t, syscall.SIGCONT)
		}
	}()
	eventually(t, "the worker gives the silent stream up", func() bool { return !worker.Connected() })
	d.Signal(t, syscall.SIGCONT)
	stopped = false

	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := final.Tasks[0]
	if final.State != dukat.JobSucceeded || held.Attempts != 2 || held.Interruptions != 1 || !worker.Connected() {
		t.Fatalf("job %s, task %+v, worker connected: %v", final.State, held, worker.Connected())
	}
}
