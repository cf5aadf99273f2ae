package dukat

import (
	"time"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// Event is one thing that happened to a job, numbered per job from 1 without gaps: a
// *JobStateChanged, *TaskStateChanged, *TaskProgress, *TaskOutput, *TaskWaiting or *Snapshot
// (the engine's words, dukat.core.events). Switch on the type:
//
//	switch e := event.(type) {
//	case *dukat.TaskStateChanged:
//		fmt.Println(e.Sequence, e.TaskID, e.State)
//	case *dukat.JobStateChanged:
//		fmt.Println(e.Sequence, "job", e.State)
//	}
type Event interface {
	// Header is what every event has: its sequence, its job and its time.
	Header() EventHeader
	isEvent()
}

// EventHeader is what every event has. Its fields are promoted: event.Sequence.
type EventHeader struct {
	// Sequence is the event's position in its job's log, from 1, without gaps.
	Sequence int64
	JobID    string
	// Time is when it happened (the daemon's wall clock).
	Time time.Time
}

// Header is the event's header.
func (h EventHeader) Header() EventHeader { return h }
func (EventHeader) isEvent()              {}

// JobStateChanged: the job entered State.
type JobStateChanged struct {
	EventHeader
	State   JobState
	Message string // why, in words
}

// TaskStateChanged: a task entered State.
type TaskStateChanged struct {
	EventHeader
	TaskID string
	State  TaskState
	// Attempt is the attempt this change belongs to, from 1; 0 before the first attempt.
	Attempt int
	// Message says why: the error of a failed attempt, the dependency that failed, ...
	Message string
}

// TaskProgress: a running task said how far it got.
type TaskProgress struct {
	EventHeader
	TaskID string
	// Fraction is how far, 0 to 1, when HasFraction (a task may only say what it is doing).
	Fraction    float64
	HasFraction bool
	Message     string
}

// TaskOutput: a task wrote output (exec tasks: whole lines of stdout and stderr).
type TaskOutput struct {
	EventHeader
	TaskID string
	Stream string // "stdout" or "stderr"
	Text   string
}

// TaskWaiting: a READY task started to wait for something that may never come, a worker for
// a queue nobody serves; said once per task (and daemon run), its state unchanged.
type TaskWaiting struct {
	EventHeader
	TaskID string
	// WaitingFor is what it waits for, in words: "a worker for queue 'q' (none connected)".
	WaitingFor string
	// Queue is the dispatch queue it waits on a worker of; empty for any other wait.
	Queue string
}

// Snapshot is the whole job at Sequence (tasks without results): given instead of the
// events a watcher missed when the daemon no longer holds them.
type Snapshot struct {
	EventHeader
	Job JobSnapshot
}

var outputStreams = map[dukatv1.OutputStream]string{
	dukatv1.OutputStream_OUTPUT_STREAM_STDOUT: "stdout",
	dukatv1.OutputStream_OUTPUT_STREAM_STDERR: "stderr",
}

// eventFromProto is the Event of a message, or nil for a kind this client does not know
// and for breaker transitions, which belong to no job.
func eventFromProto(message *dukatv1.Event) Event {
	header := EventHeader{
		Sequence: message.GetSequence(), JobID: message.GetJobId(), Time: timeOf(message.GetTime()),
	}
	switch kind := message.GetKind().(type) {
	case *dukatv1.Event_TaskState:
		change := kind.TaskState
		return &TaskStateChanged{
			EventHeader: header, TaskID: change.GetTaskId(), State: TaskState(change.GetState()),
			Attempt: int(change.GetAttempt()), Message: change.GetMessage(),
		}
	case *dukatv1.Event_JobState:
		return &JobStateChanged{
			EventHeader: header, State: JobState(kind.JobState.GetState()), Message: kind.JobState.GetMessage(),
		}
	case *dukatv1.Event_Progress:
		progress := kind.Progress
		return &TaskProgress{
			EventHeader: header, TaskID: progress.GetTaskId(), Fraction: progress.GetFraction(),
			HasFraction: progress.Fraction != nil, Message: progress.GetMessage(),
		}
	case *dukatv1.Event_Output:
		output := kind.Output
		return &TaskOutput{
			EventHeader: header, TaskID: output.GetTaskId(), Stream: outputStreams[output.GetStream()],
			Text: output.GetText(),
		}
	case *dukatv1.Event_TaskWaiting:
		waiting := kind.TaskWaiting
		return &TaskWaiting{
			EventHeader: header, TaskID: waiting.GetTaskId(), WaitingFor: waiting.GetWaitingFor(),
			Queue: waiting.GetQueue(),
		}
	case *dukatv1.Event_Snapshot:
		return &Snapshot{EventHeader: header, Job: jobFromProto(kind.Snapshot.GetJob())}
	}
	return nil
}
