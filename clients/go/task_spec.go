package dukat

import (
	"maps"
	"math"
	"slices"
	"time"
)

// TaskSpec is one task of a job: what to run (Exec or Dispatch) and under which conditions.
// It is a value: each method returns a changed copy and leaves the receiver as it was, so a
// TaskSpec can be a template for many:
//
//	fetch := dukat.Exec("fetch", "curl", "-fsS", url).Retry(dukat.Retries(3)).Timeout(time.Minute)
//	parse := dukat.Dispatch("parse", "parsers", nil).DependsOn("fetch").Resources(dukat.CPU(0.5))
//
// The daemon validates the whole job at Submit and names the task and field of each mistake.
type TaskSpec struct {
	id             string
	description    string
	dependencies   []string
	resources      []Resource
	breaker        string
	waitForBreaker bool
	retry          *RetryPolicy
	interruptions  *int32
	timeout        time.Duration
	priority       int
	triggerRule    TriggerRule
	labels         map[string]string
	exec           *execAction
	dispatch       *dispatchAction
	misuse         []FieldViolation // exec options on a dispatch task and the like: refused at Submit
}

type execAction struct {
	argv  []string
	env   map[string]string
	cwd   string
	stdin []byte
}

type dispatchAction struct {
	queue       string
	payload     []byte
	contentType string
}

// Exec is a task that runs argv as a subprocess of the daemon (argv[0] looked up on its
// PATH; exit status 0 is success). Only a daemon started with --allow-exec accepts it.
func Exec(id string, argv ...string) TaskSpec {
	return TaskSpec{id: id, exec: &execAction{argv: slices.Clone(argv)}}
}

// Dispatch is a task handed to a Worker serving queue (in any language), with payload as
// its input, passed through untouched.
func Dispatch(id, queue string, payload []byte) TaskSpec {
	return TaskSpec{id: id, dispatch: &dispatchAction{queue: queue, payload: slices.Clone(payload)}}
}

// ID is the task's id, unique within its job.
func (t TaskSpec) ID() string { return t.id }

// Description says what the task does, for people.
func (t TaskSpec) Description(text string) TaskSpec {
	t.description = text
	return t
}

// DependsOn adds tasks of the same job that must end before this one runs (how they must
// end is the TriggerRule).
func (t TaskSpec) DependsOn(taskIDs ...string) TaskSpec {
	t.dependencies = append(slices.Clip(t.dependencies), taskIDs...)
	return t
}

// Resources adds resources the task holds while it runs; all are taken at once or none.
func (t TaskSpec) Resources(resources ...Resource) TaskSpec {
	t.resources = append(slices.Clip(t.resources), resources...)
	return t
}

// Breaker names the daemon's circuit breaker that guards the task's downstream (created with
// the daemon's defaults if it does not exist yet). While it is open an attempt fails at once
// (retried by policy), unless WaitForBreaker.
func (t TaskSpec) Breaker(name string) TaskSpec {
	t.breaker = name
	return t
}

// WaitForBreaker makes the task wait for its open breaker to half-open, without holding a
// slot, instead of failing the attempt.
func (t TaskSpec) WaitForBreaker() TaskSpec {
	t.waitForBreaker = true
	return t
}

// Retry sets how the task is retried after a failed attempt (default: one attempt, no
// retry). Interrupted attempts are not failures: see MaxInterruptions.
func (t TaskSpec) Retry(policy RetryPolicy) TaskSpec {
	t.retry = &policy
	return t
}

// MaxInterruptions is how many interrupted attempts the task is run again after (default 3):
// an attempt lost through no fault of the task (the daemon restarted, its worker left or went
// silent) runs again at once without counting against the RetryPolicy; one interruption more
// fails the task. 0: the task runs at most once.
func (t TaskSpec) MaxInterruptions(n int) TaskSpec {
	limit := int32(min(n, math.MaxInt32))
	t.interruptions = &limit
	return t
}

// Timeout is how long one attempt may run (default: no limit); an attempt that runs over
// fails, and is retried by the retry policy.
func (t TaskSpec) Timeout(d time.Duration) TaskSpec {
	t.timeout = d
	return t
}

// Priority: higher runs first among the ready tasks of the job; ties go in submission order.
func (t TaskSpec) Priority(priority int) TaskSpec {
	t.priority = priority
	return t
}

// TriggerRule says when the task may run, given how its dependencies ended (default
// AllSuccess).
func (t TaskSpec) TriggerRule(rule TriggerRule) TaskSpec {
	t.triggerRule = rule
	return t
}

// Labels adds free-form key/value labels, for people and tools.
func (t TaskSpec) Labels(labels map[string]string) TaskSpec {
	t.labels = merged(t.labels, labels)
	return t
}

// Env adds environment variables for an exec task's process, to those the daemon gives
// tasks.
func (t TaskSpec) Env(env map[string]string) TaskSpec {
	return t.withExec("exec.env", "env", func(e *execAction) { e.env = merged(e.env, env) })
}

// Cwd is an exec task's working directory (default: the daemon's).
func (t TaskSpec) Cwd(dir string) TaskSpec {
	return t.withExec("exec.cwd", "cwd", func(e *execAction) { e.cwd = dir })
}

// Stdin is written to an exec task's standard input, which is then closed.
func (t TaskSpec) Stdin(input []byte) TaskSpec {
	return t.withExec("exec.stdin", "stdin", func(e *execAction) { e.stdin = slices.Clone(input) })
}

// ContentType says how to read a dispatch task's payload (a media type such as
// "application/json"), passed through to the worker untouched.
func (t TaskSpec) ContentType(mediaType string) TaskSpec {
	if t.dispatch == nil {
		return t.refuse("dispatch.content_type", "content_type is for dispatch tasks; an exec task has none")
	}
	action := *t.dispatch
	action.contentType = mediaType
	t.dispatch = &action
	return t
}

// withExec changes a copy of the exec action, or records that a dispatch task has none.
func (t TaskSpec) withExec(field, option string, change func(*execAction)) TaskSpec {
	if t.exec == nil {
		return t.refuse(field, option+" is for exec tasks; a dispatch task has none")
	}
	action := *t.exec
	change(&action)
	t.exec = &action
	return t
}

func (t TaskSpec) refuse(field, description string) TaskSpec {
	t.misuse = append(slices.Clip(t.misuse), FieldViolation{field, description})
	return t
}

// merged is a new map of base's entries, then extra's.
func merged(base, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string, len(extra))
	}
	maps.Copy(out, extra)
	return out
}
