package dukat

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

func TestATaskSpecIsAValueItsMethodsCopy(t *testing.T) {
	base := Exec("base", "true").DependsOn("a").Labels(map[string]string{"k": "v"}).
		Env(map[string]string{"E": "0"})
	one := base.DependsOn("b").Labels(map[string]string{"k": "one"}).Env(map[string]string{"E": "1"})
	two := base.DependsOn("c").Resources(CPU(0.5)).Timeout(time.Second)

	job, err := Job(base, one, two).toProto()
	if err != nil {
		t.Fatal(err)
	}
	b, o, w := job.Tasks[0], job.Tasks[1], job.Tasks[2]
	if !slices.Equal(b.Dependencies, []string{"a"}) || !slices.Equal(o.Dependencies, []string{"a", "b"}) ||
		!slices.Equal(w.Dependencies, []string{"a", "c"}) {
		t.Fatalf("dependencies %v %v %v", b.Dependencies, o.Dependencies, w.Dependencies)
	}
	if b.Labels["k"] != "v" || o.Labels["k"] != "one" || b.GetExec().Env["E"] != "0" || o.GetExec().Env["E"] != "1" {
		t.Fatalf("labels %v %v, env %v %v", b.Labels, o.Labels, b.GetExec().Env, o.GetExec().Env)
	}
	if len(b.Resources) != 0 || b.Timeout != nil || w.Timeout.AsDuration() != time.Second {
		t.Fatalf("base took two's options: %v %v", b.Resources, b.Timeout)
	}
}

func TestTheWireFormOfATask(t *testing.T) {
	task := Dispatch("d", "queue", []byte("in")).ContentType("application/json").
		Retry(Retries(4)).Breaker("api").WaitForBreaker().Priority(7).TriggerRule(AllDone).
		Resources(GPU(1), Custom("licence", 2)).Description("does d").MaxInterruptions(0)
	job, err := Job(task).Labels(map[string]string{"team": "x"}).FailFast().MaxConcurrency(3).toProto()
	if err != nil {
		t.Fatal(err)
	}
	jitter, never := 0.2, int32(0)
	want := &dukatv1.TaskSpec{
		Id: "d", Description: "does d", CircuitBreaker: "api", WaitForBreaker: true, Priority: 7,
		MaxInterruptions: &never,
		TriggerRule:      dukatv1.TriggerRule_TRIGGER_RULE_ALL_DONE,
		Resources: []*dukatv1.ResourceRequirement{
			{Type: dukatv1.ResourceType_RESOURCE_TYPE_GPU, Amount: 1},
			{Type: dukatv1.ResourceType_RESOURCE_TYPE_CUSTOM, Amount: 2, Name: "licence"},
		},
		Retry: &dukatv1.RetryPolicy{
			MaxAttempts: 4, InitialBackoff: durationpb.New(time.Second), MaxBackoff: durationpb.New(time.Minute),
			Multiplier: 2, Jitter: &jitter,
		},
		Action: &dukatv1.TaskSpec_Dispatch{Dispatch: &dukatv1.DispatchAction{
			Queue: "queue", Payload: []byte("in"), ContentType: "application/json",
		}},
	}
	if !proto.Equal(job.Tasks[0], want) {
		t.Fatalf("wire form\n%v\nwant\n%v", job.Tasks[0], want)
	}
	if !job.FailFast || job.MaxConcurrency != 3 || job.Labels["team"] != "x" {
		t.Fatalf("job %v", job)
	}
	if _, err := Job(Exec("e", "true").ContentType("text/plain")).toProto(); err == nil {
		t.Fatal("a content type on an exec task went through")
	}
}

func TestErrorsSpeakTheDaemonsWords(t *testing.T) {
	for code, name := range map[codes.Code]string{
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.OK: "OK", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.Unauthenticated: "UNAUTHENTICATED",
	} {
		if got := codeName(code); got != name {
			t.Errorf("%v is %s, want %s", code, got, name)
		}
	}
	for message, task := range map[string]string{
		"task 'a': dependency cycle: a -> b -> a": "a", `task "b": bad`: "b", "job: empty": "", "task x: y": "",
	} {
		if got := taskIDOf(message); got != task {
			t.Errorf("taskIDOf(%q) = %q, want %q", message, got, task)
		}
	}
	pathErr := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	for err, kind := range map[error]string{
		fmt.Errorf("reading: %w", pathErr): "fs.PathError",
		errors.New("plain"):                "error",
		fmt.Errorf("late: %w", errors.Join(errors.New("a"), context.DeadlineExceeded)): "DeadlineExceeded",
	} {
		if got := errorType(err); got != kind {
			t.Errorf("errorType(%v) = %s, want %s", err, got, kind)
		}
	}
	if got := truncate("héllo", 2); got != "h" {
		t.Errorf("truncate cut a rune: %q", got)
	}
}
