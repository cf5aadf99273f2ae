package dukat

import (
	"context"
	"errors"
	"fmt"
	"time"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// JobHandle is a job submitted to the daemon, or looked up by id: watch it, wait for it,
// cancel it. Cheap to make (Client.Job makes no call); safe for concurrent use.
type JobHandle struct {
	// ID is the id the daemon gave the job at Submit.
	ID     string
	client *Client
	// probe is the id of one of the job's tasks, when known (from Submit), so that Wait can
	// ask for the job's state without all of its tasks.
	probe string
}

// SubmitOption configures Submit.
type SubmitOption func(*dukatv1.SubmitRequest)

// WithRequestID makes a Submit safe to repeat under a request id of the caller's: the daemon
// answers a repeat with the job it made the first time, across its restarts too. Without
// it, each Submit call has a fresh id of its own (its retries share it).
func WithRequestID(id string) SubmitOption {
	return func(r *dukatv1.SubmitRequest) { r.RequestId = id }
}

// Submit submits a whole job; the daemon accepts all of it or answers ErrInvalidArgument
// (an *Error naming the task and field, with its Violations). When the daemon is briefly
// unreachable the Submit is retried (Reconnect) under its request id, so it is made once.
func (c *Client) Submit(ctx context.Context, job JobSpec, options ...SubmitOption) (*JobHandle, error) {
	return c.submit(ctx, "", &job, options)
}

// submit submits job (nil: a rerun of rerunOf's own spec) under a fresh request id, which
// makes it safe to repeat, with options applied.
func (c *Client) submit(ctx context.Context, rerunOf string, job *JobSpec, options []SubmitOption) (*JobHandle, error) {
	request := &dukatv1.SubmitRequest{RequestId: randomID(), RerunOf: rerunOf}
	probe := ""
	if job != nil {
		spec, err := job.toProto()
		if err != nil {
			return nil, err
		}
		request.Job = spec
		if len(job.tasks) > 0 {
			probe = job.tasks[0].id
		}
	}
	for _, option := range options {
		option(request)
	}
	response, err := call(ctx, c, true, c.scheduler.Submit, request)
	if err != nil {
		return nil, err
	}
	handle := c.Job(response.GetJobId())
	handle.probe = probe
	return handle, nil
}

// Rerun runs the finished job jobID again from where it failed, as a new job: its tasks that
// SUCCEEDED in the old job doing the same work, with every upstream carried too, are carried
// over (SUCCEEDED at once with their results; TaskStatus.CarriedFrom names jobID), the rest
// run. job is a corrected spec to run instead of the old job's own, or nil for the old job's.
// A job still running is ErrFailedPrecondition; one the daemon no longer holds ErrNotFound.
func (c *Client) Rerun(ctx context.Context, jobID string, job *JobSpec, options ...SubmitOption) (*JobHandle, error) {
	return c.Job(jobID).Rerun(ctx, job, options...)
}

// Rerun runs this job, once finished, again from where it failed: see Client.Rerun.
func (h *JobHandle) Rerun(ctx context.Context, job *JobSpec, options ...SubmitOption) (*JobHandle, error) {
	return h.client.submit(ctx, h.ID, job, options)
}

// Job is a handle to a job by id; no call is made (a wrong id shows on first use).
func (c *Client) Job(jobID string) *JobHandle { return &JobHandle{ID: jobID, client: c} }

// GetJob is the job now, with every task and result; ErrNotFound for an id the daemon lacks.
func (c *Client) GetJob(ctx context.Context, jobID string) (JobSnapshot, error) {
	return c.Job(jobID).Get(ctx)
}

// Cancel cancels a whole job, or taskIDs and everything downstream of them, with reason
// kept in the cancelled tasks' errors and the job's message. Idempotent; returns how many
// tasks this call cancelled (0 when all had ended).
func (c *Client) Cancel(ctx context.Context, jobID, reason string, taskIDs ...string) (int, error) {
	return c.Job(jobID).Cancel(ctx, reason, taskIDs...)
}

// Wait waits for the job to end and returns it (see JobHandle.Wait).
func (c *Client) Wait(ctx context.Context, jobID string) (JobSnapshot, error) {
	return c.Job(jobID).Wait(ctx)
}

// Get is the job now, with every task (GetJob), results and failures included: those a
// first answer left out (over the daemon's budget for one message) are asked for by task id.
func (h *JobHandle) Get(ctx context.Context) (JobSnapshot, error) {
	job, err := h.getJob(ctx)
	if err != nil {
		return JobSnapshot{}, err
	}
	snapshot := jobFromProto(job)
	var missing []string
	for _, task := range job.GetTasks() {
		if task.GetResultOmitted() {
			missing = append(missing, task.GetId())
		}
	}
	if len(missing) == 0 {
		return snapshot, nil
	}
	fetched, err := h.fetchResults(ctx, missing)
	if err != nil {
		return JobSnapshot{}, err
	}
	for i, task := range snapshot.Tasks {
		if status, ok := fetched[task.ID]; ok {
			snapshot.Tasks[i].Result, snapshot.Tasks[i].Failure = status.Result, status.Failure
		}
	}
	return snapshot, nil
}

func (h *JobHandle) getJob(ctx context.Context, taskIDs ...string) (*dukatv1.Job, error) {
	request := &dukatv1.GetJobRequest{JobId: h.ID, TaskIds: taskIDs}
	response, err := call(ctx, h.client, true, h.client.scheduler.GetJob, request)
	return response.GetJob(), err
}

// fetchResults asks for the results (and failures' output tails) a GetJob left out, by task
// id: the statuses that have them. Each answer brings as many as fit; one that brings none
// (a single result bigger than the budget) ends the loop rather than asking forever.
func (h *JobHandle) fetchResults(ctx context.Context, taskIDs []string) (map[string]TaskStatus, error) {
	fetched := make(map[string]TaskStatus, len(taskIDs))
	for len(taskIDs) > 0 {
		job, err := h.getJob(ctx, taskIDs...)
		if err != nil {
			return nil, err
		}
		taskIDs = taskIDs[:0:0]
		for _, task := range job.GetTasks() {
			fetched[task.GetId()] = taskStatusFromProto(task)
			if task.GetResultOmitted() {
				taskIDs = append(taskIDs, task.GetId())
			}
		}
		if len(taskIDs) == len(job.GetTasks()) {
			break
		}
	}
	return fetched, nil
}

// Cancel cancels the whole job, or taskIDs and everything downstream of them (see
// Client.Cancel).
func (h *JobHandle) Cancel(ctx context.Context, reason string, taskIDs ...string) (int, error) {
	request := &dukatv1.CancelRequest{JobId: h.ID, TaskIds: taskIDs, Reason: reason}
	response, err := call(ctx, h.client, true, h.client.scheduler.Cancel, request)
	return int(response.GetCancelledCount()), err
}

// pollWhileRefused is how Wait polls GetJob while the daemon refuses it a Watch (jittered,
// as retries are).
var pollWhileRefused = Reconnect{
	InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2, GiveUpAfter: Forever,
}

// Wait waits for the job to end (its terminal event on Watch) and returns the job then
// (GetJob), every task and result included.
//
// When the daemon refuses a Watch (ErrResourceExhausted: its limits on open streams), Wait
// polls GetJob instead, every 50 ms at first and at most every second. When the daemon has
// dropped the job by then (its retention: --retain-finished-jobs, --finished-job-ttl), Wait
// returns the job as its events left it: State, Message, FinishedAt and LastSequence from
// its terminal event, Labels and CreatedAt from a look before, and no Tasks, which went with
// it. A job dropped before Wait saw its end is ErrNotFound.
func (h *JobHandle) Wait(ctx context.Context) (JobSnapshot, error) {
	probe := h.probe
	var seen JobSnapshot
	if probe != "" {
		glance, err := h.glance(ctx, probe)
		if err != nil {
			return JobSnapshot{}, err
		}
		seen = glance
	} else {
		snapshot, err := h.Get(ctx)
		if err != nil || snapshot.State.IsTerminal() {
			return snapshot, err
		}
		probe = snapshot.Tasks[0].ID // a job has at least one
		seen = withoutTasks(snapshot)
	}
	if !seen.State.IsTerminal() {
		ended, err := h.untilEnd(ctx, seen, probe)
		if err != nil {
			return JobSnapshot{}, err
		}
		seen = ended
	}
	final, err := h.Get(ctx)
	if errors.Is(err, ErrNotFound) {
		return seen, nil // dropped since it ended
	}
	return final, err
}

// glance is the job now without its tasks: GetJob asked for one task (probe), not all.
func (h *JobHandle) glance(ctx context.Context, probe string) (JobSnapshot, error) {
	job, err := h.getJob(ctx, probe)
	if err != nil {
		return JobSnapshot{}, err
	}
	return withoutTasks(jobFromProto(job)), nil
}

// untilEnd is the job as it ended: followed on Watch, else polled (see Wait).
func (h *JobHandle) untilEnd(ctx context.Context, seen JobSnapshot, probe string) (JobSnapshot, error) {
	// From the snapshot's sequence on: a 100,000-task job is not replayed from the start.
	err := h.client.follow(ctx, h.ID, watchSettings{after: seen.LastSequence, jobEventsOnly: true},
		func(event Event) bool {
			seen = after(seen, event)
			return true
		})
	if !errors.Is(err, ErrResourceExhausted) {
		return seen, err
	}
	polls := newBackoff(pollWhileRefused) // no Watch for us now: poll
	for !seen.State.IsTerminal() {
		if _, err := polls.wait(ctx); err != nil {
			return seen, err
		}
		if seen, err = h.glance(ctx, probe); err != nil {
			return seen, err
		}
	}
	return seen, nil
}

func withoutTasks(snapshot JobSnapshot) JobSnapshot {
	snapshot.Tasks = nil
	return snapshot
}

// after is the job as seen, then event (a job event: a state change or a snapshot).
func after(seen JobSnapshot, event Event) JobSnapshot {
	switch e := event.(type) {
	case *Snapshot:
		return withoutTasks(e.Job)
	case *JobStateChanged:
		seen.State, seen.Message, seen.LastSequence = e.State, e.Message, e.Sequence
		if e.State.IsTerminal() {
			seen.FinishedAt = e.Time
		}
	}
	return seen
}

func (h *JobHandle) String() string {
	return fmt.Sprintf("job %s at %s", h.ID, h.client.address)
}
