package dukat

import "fmt"

// JobState is where a job is in its life: RUNNING until every task has ended, then one of the
// terminal states SUCCEEDED, FAILED or CANCELLED. The numbers are the wire's (job.proto).
type JobState int32

// The states of a job.
const (
	JobPending   JobState = 1 // accepted, not started yet
	JobRunning   JobState = 2 // some task has not ended yet
	JobSucceeded JobState = 3 // every task succeeded
	JobFailed    JobState = 4 // a task failed after its retries
	JobCancelled JobState = 5 // the job was cancelled
)

var jobStateNames = map[JobState]string{
	JobPending: "PENDING", JobRunning: "RUNNING", JobSucceeded: "SUCCEEDED",
	JobFailed: "FAILED", JobCancelled: "CANCELLED",
}

// String is the state's name as the engine spells it ("SUCCEEDED").
func (s JobState) String() string { return enumName(jobStateNames, s, "JobState") }

// IsTerminal reports whether the job has ended (SUCCEEDED, FAILED or CANCELLED).
func (s JobState) IsTerminal() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// TaskState is where a task is in its life: PENDING -> READY -> RUNNING -> a terminal state
// (SUCCEEDED, FAILED, CANCELLED, SKIPPED), with RETRYING between attempts. The numbers are
// the wire's (job.proto).
type TaskState int32

// The states of a task.
const (
	TaskPending   TaskState = 1 // its dependencies have not ended yet
	TaskReady     TaskState = 2 // runnable: waiting for a slot, resources, a worker or a breaker
	TaskRunning   TaskState = 3 // an attempt is in progress
	TaskRetrying  TaskState = 4 // an attempt failed; waiting out the backoff before the next
	TaskSucceeded TaskState = 5 // the last attempt succeeded
	TaskFailed    TaskState = 6 // the last attempt failed and no retry is left
	TaskCancelled TaskState = 7 // cancelled before it ended
	TaskSkipped   TaskState = 8 // never ran: a dependency did not succeed
)

var taskStateNames = map[TaskState]string{
	TaskPending: "PENDING", TaskReady: "READY", TaskRunning: "RUNNING",
	TaskRetrying: "RETRYING", TaskSucceeded: "SUCCEEDED", TaskFailed: "FAILED",
	TaskCancelled: "CANCELLED", TaskSkipped: "SKIPPED",
}

// String is the state's name as the engine spells it ("SKIPPED").
func (s TaskState) String() string { return enumName(taskStateNames, s, "TaskState") }

// IsTerminal reports whether the task has ended (SUCCEEDED, FAILED, CANCELLED or SKIPPED).
func (s TaskState) IsTerminal() bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskCancelled || s == TaskSkipped
}

// TriggerRule says when a task may run, given how its dependencies ended.
type TriggerRule int32

// The trigger rules.
const (
	// AllSuccess: every dependency succeeded; if one did not, the task is SKIPPED (the
	// default).
	AllSuccess TriggerRule = 1
	// AllDone: every dependency ended, whatever the outcome (clean-up steps).
	AllDone TriggerRule = 2
)

var triggerRuleNames = map[TriggerRule]string{AllSuccess: "ALL_SUCCESS", AllDone: "ALL_DONE"}

// String is the rule's name as the engine spells it ("ALL_DONE").
func (r TriggerRule) String() string { return enumName(triggerRuleNames, r, "TriggerRule") }

// BreakerState is the state of a circuit breaker. The numbers are the wire's (breaker.proto),
// one more than the engine's.
type BreakerState int32

// The states of a circuit breaker.
const (
	BreakerClosed   BreakerState = 1 // calls go through; failures are counted
	BreakerOpen     BreakerState = 2 // calls are refused until the timeout has passed
	BreakerHalfOpen BreakerState = 3 // a bounded number of trial calls go through
)

var breakerStateNames = map[BreakerState]string{
	BreakerClosed: "CLOSED", BreakerOpen: "OPEN", BreakerHalfOpen: "HALF_OPEN",
}

// String is the state's name as the engine spells it ("HALF_OPEN").
func (s BreakerState) String() string { return enumName(breakerStateNames, s, "BreakerState") }

// enumName spells a value the daemon may send before this client knows it as Type(N).
func enumName[E ~int32](names map[E]string, value E, typeName string) string {
	if name, ok := names[value]; ok {
		return name
	}
	return fmt.Sprintf("%s(%d)", typeName, int32(value))
}
