package dukat

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// JobSpec is a DAG of tasks, submitted whole and watched as one: the daemon accepts every
// task or none of them. A value, like TaskSpec: each method returns a changed copy.
type JobSpec struct {
	tasks          []TaskSpec
	labels         map[string]string
	failFast       bool
	maxConcurrency int
}

// Job is a job of tasks, in any order (dependencies decide the order they run in).
func Job(tasks ...TaskSpec) JobSpec { return JobSpec{tasks: slices.Clone(tasks)} }

// Tasks are the job's tasks, as given.
func (j JobSpec) Tasks() []TaskSpec { return slices.Clone(j.tasks) }

// Add adds tasks to the job.
func (j JobSpec) Add(tasks ...TaskSpec) JobSpec {
	j.tasks = append(slices.Clip(j.tasks), tasks...)
	return j
}

// Labels adds free-form key/value labels, for ListJobs filters and for people.
func (j JobSpec) Labels(labels map[string]string) JobSpec {
	j.labels = merged(j.labels, labels)
	return j
}

// FailFast cancels the rest of the job as soon as one task fails (after its retries),
// instead of skipping only that task's dependents and letting independent branches run on.
func (j JobSpec) FailFast() JobSpec {
	j.failFast = true
	return j
}

// MaxConcurrency is how many tasks of this job may be in flight at once (default: no limit
// of the job's own; the daemon's global limit still applies).
func (j JobSpec) MaxConcurrency(n int) JobSpec {
	j.maxConcurrency = n
	return j
}

// toProto is the wire form of the job, or an INVALID_ARGUMENT *Error for a mistake this
// client can see (an option of the wrong kind of task); the daemon checks everything else.
func (j JobSpec) toProto() (*dukatv1.JobSpec, error) {
	job := &dukatv1.JobSpec{
		Labels: j.labels, FailFast: j.failFast, MaxConcurrency: int32(j.maxConcurrency),
		Tasks: make([]*dukatv1.TaskSpec, len(j.tasks)),
	}
	for i, t := range j.tasks {
		if len(t.misuse) > 0 {
			v := t.misuse[0]
			return nil, invalidArgument(t.id, fmt.Sprintf("job.tasks[%d].%s", i, v.Field), v.Description)
		}
		job.Tasks[i] = t.toProto()
	}
	return job, nil
}

func (t TaskSpec) toProto() *dukatv1.TaskSpec {
	task := &dukatv1.TaskSpec{
		Id: t.id, Description: t.description, Dependencies: t.dependencies,
		CircuitBreaker: t.breaker, WaitForBreaker: t.waitForBreaker,
		Priority: int32(t.priority), TriggerRule: dukatv1.TriggerRule(t.triggerRule),
		Labels: t.labels, MaxInterruptions: t.interruptions,
	}
	for _, r := range t.resources {
		task.Resources = append(task.Resources, r.toProto())
	}
	if t.retry != nil {
		task.Retry = t.retry.toProto()
	}
	if t.timeout != 0 {
		task.Timeout = durationpb.New(t.timeout)
	}
	switch {
	case t.exec != nil:
		task.Action = &dukatv1.TaskSpec_Exec{Exec: &dukatv1.ExecAction{
			Argv: t.exec.argv, Env: t.exec.env, Cwd: t.exec.cwd, Stdin: t.exec.stdin,
		}}
	case t.dispatch != nil:
		task.Action = &dukatv1.TaskSpec_Dispatch{Dispatch: &dukatv1.DispatchAction{
			Queue: t.dispatch.queue, Payload: t.dispatch.payload, ContentType: t.dispatch.contentType,
		}}
	}
	return task
}
