package dukat

import (
	"context"
	"fmt"
	"time"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// Task is one attempt of a dispatch task given to a Worker's Handler. Attempt is its fencing
// token: a result or a progress report for an attempt the daemon gave up is ignored.
type Task struct {
	JobID       string
	TaskID      string
	Attempt     int
	Queue       string
	Payload     []byte
	ContentType string
	// UpstreamResults is how each dependency ended, in the order of the task's dependencies.
	UpstreamResults []UpstreamResult
	// Timeout is how long this attempt may run (its ctx ends then); 0: no limit.
	Timeout time.Duration

	progress func(*dukatv1.WorkProgress)
}

// UpstreamResult is how one dependency of the task ended.
type UpstreamResult struct {
	TaskID string
	// State is its terminal state (not SUCCEEDED only under trigger rule AllDone).
	State TaskState
	// Payload is what it returned, when it was a dispatch task that succeeded.
	Payload     []byte
	ContentType string
	// Error is why it did not succeed, in words.
	Error string
}

// Upstream is how the dependency taskID ended, and whether it is one.
func (t *Task) Upstream(taskID string) (UpstreamResult, bool) {
	for _, u := range t.UpstreamResults {
		if u.TaskID == taskID {
			return u, true
		}
	}
	return UpstreamResult{}, false
}

// ReportProgress says how far the attempt is (fraction, 0 to 1) and what it is doing.
// Batched: sent with the worker's next update, the latest report per attempt only (a
// TaskProgress event for watchers). A fraction outside 0 to 1 is an error, and not sent.
func (t *Task) ReportProgress(fraction float64, message string) error {
	if !(fraction >= 0 && fraction <= 1) { // NaN too: every comparison with it is false
		return fmt.Errorf("dukat: progress fraction must be between 0 and 1, not %v", fraction)
	}
	t.report(&dukatv1.WorkProgress{Fraction: &fraction, Message: message})
	return nil
}

// ReportMessage says what the attempt is doing without saying how far it is.
func (t *Task) ReportMessage(message string) {
	t.report(&dukatv1.WorkProgress{Message: message})
}

func (t *Task) report(progress *dukatv1.WorkProgress) {
	progress.JobId, progress.TaskId, progress.Attempt = t.JobID, t.TaskID, int32(t.Attempt)
	if t.progress != nil {
		t.progress(progress)
	}
}

func (t *Task) String() string {
	return fmt.Sprintf("task %s of job %s, attempt %d", t.TaskID, t.JobID, t.Attempt)
}

// TaskCancelledError is the cause (context.Cause) of a Handler's ctx when the daemon took the
// attempt back: the task or its job was cancelled, or the attempt ran past its timeout.
// errors.Is(err, context.Canceled) is true of it.
type TaskCancelledError struct{ Reason string }

func (e *TaskCancelledError) Error() string {
	return "dukat: the daemon took the attempt back: " + e.Reason
}

func (e *TaskCancelledError) Is(target error) bool { return target == context.Canceled }

// attemptKey names one attempt on a stream.
type attemptKey struct {
	jobID, taskID string
	attempt       int32
}

func taskFromProto(a *dukatv1.TaskAssignment, progress func(*dukatv1.WorkProgress)) *Task {
	task := &Task{
		JobID: a.GetJobId(), TaskID: a.GetTaskId(), Attempt: int(a.GetAttempt()), Queue: a.GetQueue(),
		Payload: a.GetPayload(), ContentType: a.GetContentType(), progress: progress,
	}
	if a.GetTimeout() != nil {
		task.Timeout = a.GetTimeout().AsDuration()
	}
	for _, u := range a.GetUpstreamResults() {
		task.UpstreamResults = append(task.UpstreamResults, UpstreamResult{
			TaskID: u.GetTaskId(), State: TaskState(u.GetState()), Payload: u.GetPayload(),
			ContentType: u.GetContentType(), Error: u.GetError(),
		})
	}
	return task
}
