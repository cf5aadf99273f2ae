package dukat_test

// The generated Go code and grpc-go against a real dukatd on a unix socket: unary calls
// (Submit, GetJob), a server stream (Watch) and a bidi stream (Work). A proof of codegen and
// transport, not a client API.

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

const within = 20 * time.Second

func execTask(id string, argv []string, dependencies ...string) *dukatv1.TaskSpec {
	return &dukatv1.TaskSpec{
		Id:           id,
		Dependencies: dependencies,
		Action:       &dukatv1.TaskSpec_Exec{Exec: &dukatv1.ExecAction{Argv: argv}},
	}
}

func submit(ctx context.Context, t *testing.T, client dukatv1.SchedulerServiceClient, tasks ...*dukatv1.TaskSpec) string {
	t.Helper()
	reply, err := client.Submit(ctx, &dukatv1.SubmitRequest{Job: &dukatv1.JobSpec{Tasks: tasks}})
	if err != nil {
		t.Fatal(err)
	}
	return reply.GetJobId()
}

// watch returns every event of the job, from the first to the terminal one (Watch ends after
// it).
func watch(ctx context.Context, client dukatv1.SchedulerServiceClient, jobID string) ([]*dukatv1.Event, error) {
	stream, err := client.Watch(ctx, &dukatv1.WatchRequest{JobId: jobID})
	if err != nil {
		return nil, err
	}
	var events []*dukatv1.Event
	for {
		reply, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, reply.GetEvents()...)
	}
}

func jobStates(events []*dukatv1.Event) []dukatv1.JobState {
	var states []dukatv1.JobState
	for _, e := range events {
		if change := e.GetJobState(); change != nil {
			states = append(states, change.GetState())
		}
	}
	return states
}

func TestAnExecJobOfTwoTasksRunsAndWatchStreamsItToItsEnd(t *testing.T) {
	client := startDukatd(t, "--allow-exec")
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	jobID := submit(ctx, t, client,
		execTask("true", []string{"/bin/true"}),
		execTask("hi", []string{"sh", "-c", "echo hi"}, "true"),
	)

	events, err := watch(ctx, client, jobID)
	if err != nil {
		t.Fatal(err)
	}

	var succeeded, output []string
	for i, e := range events {
		if e.GetSequence() != int64(i+1) {
			t.Fatalf("event %d has sequence %d", i, e.GetSequence())
		}
		if change := e.GetTaskState(); change.GetState() == dukatv1.TaskState_TASK_STATE_SUCCEEDED {
			succeeded = append(succeeded, change.GetTaskId())
		}
		if out := e.GetOutput(); out != nil {
			output = append(output, out.GetTaskId()+": "+strings.TrimSpace(out.GetText()))
		}
	}
	if states := jobStates(events); len(states) == 0 || states[len(states)-1] != dukatv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job states %v, want SUCCEEDED last", states)
	}
	if !slices.Equal(succeeded, []string{"true", "hi"}) {
		t.Fatalf("tasks succeeded in order %v, want [true hi]", succeeded)
	}
	if !slices.Equal(output, []string{"hi: hi"}) {
		t.Fatalf("output %q", output)
	}
	reply, err := client.GetJob(ctx, &dukatv1.GetJobRequest{JobId: jobID})
	if err != nil {
		t.Fatal(err)
	}
	job := reply.GetJob()
	if job.GetState() != dukatv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v", job.GetState())
	}
	for _, task := range job.GetTasks() {
		if task.GetState() != dukatv1.TaskState_TASK_STATE_SUCCEEDED {
			t.Fatalf("task %s %v", task.GetId(), task.GetState())
		}
	}
}

func TestAWorkerOnTheWorkStreamRunsADispatchTask(t *testing.T) {
	client := startDukatd(t)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	const queue = "go-proof"
	jobID := submit(ctx, t, client, &dukatv1.TaskSpec{
		Id:     "dispatched",
		Action: &dukatv1.TaskSpec_Dispatch{Dispatch: &dukatv1.DispatchAction{Queue: queue, Payload: []byte("ping")}},
	})
	type watched struct {
		events []*dukatv1.Event
		err    error
	}
	done := make(chan watched, 1)
	go func() {
		events, err := watch(ctx, client, jobID)
		done <- watched{events, err}
	}()

	work, err := client.Work(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &dukatv1.WorkerHello{WorkerId: "go", Queues: []string{queue}, MaxInFlight: 1}
	if err := work.Send(&dukatv1.WorkRequest{Kind: &dukatv1.WorkRequest_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	welcomed := false
	for {
		reply, err := work.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		welcomed = welcomed || reply.GetWelcome() != nil
		for _, task := range reply.GetAssignments() {
			if string(task.GetPayload()) != "ping" {
				t.Fatalf("payload %q", task.GetPayload())
			}
			success := &dukatv1.WorkSuccess{Payload: []byte("pong"), ContentType: "text/plain"}
			result := &dukatv1.WorkResult{
				JobId: task.GetJobId(), TaskId: task.GetTaskId(), Attempt: task.GetAttempt(),
				Outcome: &dukatv1.WorkResult_Success{Success: success},
			}
			update := &dukatv1.WorkerUpdate{Results: []*dukatv1.WorkResult{result}}
			if err := work.Send(&dukatv1.WorkRequest{Kind: &dukatv1.WorkRequest_Update{Update: update}}); err != nil {
				t.Fatal(err)
			}
		}
		if len(reply.GetAssignments()) > 0 {
			work.CloseSend()
		}
	}
	w := <-done
	if w.err != nil {
		t.Fatal(w.err)
	}

	if !welcomed {
		t.Fatal("no WorkerWelcome on the stream")
	}
	if states := jobStates(w.events); len(states) == 0 || states[len(states)-1] != dukatv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job states %v, want SUCCEEDED last", states)
	}
	reply, err := client.GetJob(ctx, &dukatv1.GetJobRequest{JobId: jobID})
	if err != nil {
		t.Fatal(err)
	}
	if got := reply.GetJob().GetTasks()[0].GetResult().GetDispatch().GetPayload(); string(got) != "pong" {
		t.Fatalf("result payload %q, want pong", got)
	}
}
