package dukat

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// JobSnapshot is a job at one moment: what GetJob returns (every task, results included),
// what ListJobs lists (no tasks; Counts says how they stand) and what a Snapshot event
// carries (tasks without results).
type JobSnapshot struct {
	JobID  string
	State  JobState
	Tasks  []TaskStatus // in submission order
	Labels map[string]string
	// CreatedAt is when the job was accepted; FinishedAt when it reached its terminal state
	// (zero while it runs).
	CreatedAt, FinishedAt time.Time
	// LastSequence is the sequence of the job's latest event: Watch with After(LastSequence)
	// to follow on from this snapshot.
	LastSequence int64
	// Message says why the job is in its state (which task failed, who cancelled it, ...).
	Message string
	Counts  TaskCounts
}

// Task is the status of the task taskID, and whether the snapshot holds it.
func (j *JobSnapshot) Task(taskID string) (TaskStatus, bool) {
	for _, t := range j.Tasks {
		if t.ID == taskID {
			return t, true
		}
	}
	return TaskStatus{}, false
}

// TaskStatus is a task at one moment. Each state fills only the fields that mean something
// in it.
type TaskStatus struct {
	ID    string
	State TaskState
	// Attempts started so far, the current one and the interrupted ones included.
	Attempts int
	// Interruptions are the attempts lost through no fault of the task (the daemon restarted,
	// the worker left): they count against MaxInterruptions, not the RetryPolicy.
	Interruptions int
	// Error is the error of the last failed attempt, or why the task was skipped or
	// cancelled.
	Error string
	// StartedAt is when the first attempt started; FinishedAt when the task ended (zero until
	// then).
	StartedAt, FinishedAt time.Time
	// Progress is the latest fraction the running attempt reported, 0 to 1, when HasProgress.
	Progress        float64
	HasProgress     bool
	ProgressMessage string
	Description     string
	// Result is what the last attempt gave, when the task SUCCEEDED with an exec action
	// (*ExecResult) or a dispatch action (*DispatchResult); nil otherwise, and always nil in
	// Watch snapshots and ListJobs.
	Result Result
	// Failure is why the task FAILED, as data (Error says it in words); nil otherwise. Watch
	// snapshots carry it without its output tails.
	Failure *TaskFailure
	// WaitingFor says, for a READY task, what it waits for when that may take for ever ("a
	// worker for queue 'q' (none connected)"); WaitingForQueue is that dispatch queue (start
	// a worker serving it). Both empty otherwise.
	WaitingFor, WaitingForQueue string
	// CarriedFrom is the job this task was carried over from by a rerun (Client.Rerun): it
	// SUCCEEDED there and did not run in this job, whose result and times are that run's.
	// Empty for a task that ran here.
	CarriedFrom string
}

// TaskFailure is why a task failed: its last attempt's error, kept across daemon restarts.
type TaskFailure struct {
	// Type is the error's kind: for a dispatch task the WorkError.Type its worker sent;
	// otherwise the daemon's (TaskProcessError, TaskTimeoutError, CircuitBreakerError,
	// TaskInterruptedError).
	Type string
	// Message is the error in words, without its type.
	Message string
	// ExitCode is the exit status of an exec task's process that exited non-zero; Signal the
	// signal that killed it; 0 when none.
	ExitCode, Signal int
	// Stdout and Stderr are the tails of what an exec task's process wrote.
	Stdout, Stderr []byte
}

// TaskCounts is how many of a job's tasks are in each state.
type TaskCounts struct {
	Pending, Ready, Running, Retrying, Succeeded, Failed, Cancelled, Skipped int
}

// Result is what a task that succeeded gave: a *DispatchResult or an *ExecResult.
type Result interface{ isResult() }

// DispatchResult is what a worker sent back for a dispatch task, passed through untouched.
type DispatchResult struct {
	Payload     []byte
	ContentType string
}

// ExecResult is how the process of an exec task that succeeded ended: exit code 0, and the
// tails of its output (64 KiB of each by default, dukatd --output-tail-bytes).
type ExecResult struct {
	ExitCode       int
	Stdout, Stderr []byte
}

func (*DispatchResult) isResult() {}
func (*ExecResult) isResult()     {}

func jobFromProto(job *dukatv1.Job) JobSnapshot {
	counts := job.GetTaskCounts()
	snapshot := JobSnapshot{
		JobID: job.GetJobId(), State: JobState(job.GetState()), Labels: job.GetLabels(),
		CreatedAt: timeOf(job.GetCreatedAt()), FinishedAt: timeOf(job.GetFinishedAt()),
		LastSequence: job.GetLastSequence(), Message: job.GetMessage(),
		Counts: TaskCounts{
			Pending: int(counts.GetPending()), Ready: int(counts.GetReady()),
			Running: int(counts.GetRunning()), Retrying: int(counts.GetRetrying()),
			Succeeded: int(counts.GetSucceeded()), Failed: int(counts.GetFailed()),
			Cancelled: int(counts.GetCancelled()), Skipped: int(counts.GetSkipped()),
		},
	}
	if tasks := job.GetTasks(); len(tasks) > 0 {
		snapshot.Tasks = make([]TaskStatus, len(tasks))
		for i, task := range tasks {
			snapshot.Tasks[i] = taskStatusFromProto(task)
		}
	}
	return snapshot
}

func taskStatusFromProto(task *dukatv1.TaskStatus) TaskStatus {
	return TaskStatus{
		ID: task.GetId(), State: TaskState(task.GetState()), Attempts: int(task.GetAttempts()),
		Interruptions: int(task.GetInterruptions()),
		Error:         task.GetError(), StartedAt: timeOf(task.GetStartedAt()),
		FinishedAt: timeOf(task.GetFinishedAt()), Progress: task.GetProgress(),
		HasProgress: task.Progress != nil, ProgressMessage: task.GetProgressMessage(),
		Description: task.GetDescription(), Result: resultFromProto(task.GetResult()),
		Failure:    failureFromProto(task.GetFailure()),
		WaitingFor: task.GetWaitingFor(), WaitingForQueue: task.GetWaitingForQueue(),
		CarriedFrom: task.GetCarriedFrom(),
	}
}

func failureFromProto(failure *dukatv1.TaskFailure) *TaskFailure {
	if failure == nil {
		return nil
	}
	return &TaskFailure{
		Type: failure.GetType(), Message: failure.GetMessage(), ExitCode: int(failure.GetExitCode()),
		Signal: int(failure.GetSignal()), Stdout: failure.GetStdout(), Stderr: failure.GetStderr(),
	}
}

// resultFromProto is nil for no result, and for a kind this client does not know.
func resultFromProto(result *dukatv1.TaskResultValue) Result {
	switch kind := result.GetKind().(type) {
	case *dukatv1.TaskResultValue_Dispatch:
		return &DispatchResult{Payload: kind.Dispatch.GetPayload(), ContentType: kind.Dispatch.GetContentType()}
	case *dukatv1.TaskResultValue_Exec:
		return &ExecResult{
			ExitCode: int(kind.Exec.GetExitCode()), Stdout: kind.Exec.GetStdout(), Stderr: kind.Exec.GetStderr(),
		}
	}
	return nil
}

// timeOf is the zero time for an unset timestamp.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
