package dukat_test

import (
	"errors"
	"testing"

	"github.com/dukat-dev/dukat/clients/go"
)

func TestRerunCarriesOverWhatSucceededAndRunsTheRest(t *testing.T) {
	client := newDaemon(t, flags("--allow-exec")).Dial(t)
	ctx := testContext(t)
	broken := dukat.Job(
		dukat.Exec("fetch", "sh", "-c", "echo fetched"),
		dukat.Exec("load", "sh", "-c", "exit 3").DependsOn("fetch"),
		dukat.Exec("report", "true").DependsOn("load"),
	)
	first, err := client.Submit(ctx, broken)
	if err != nil {
		t.Fatal(err)
	}
	if final, err := first.Wait(ctx); err != nil || final.State != dukat.JobFailed {
		t.Fatalf("first run: %v %v", final.State, err)
	}

	fixed := dukat.Job(
		dukat.Exec("fetch", "sh", "-c", "echo fetched"),
		dukat.Exec("load", "true").DependsOn("fetch"),
		dukat.Exec("report", "true").DependsOn("load"),
	)
	again, err := client.Rerun(ctx, first.ID, &fixed)
	if err != nil {
		t.Fatal(err)
	}
	final, err := again.Wait(ctx)
	if err != nil || final.State != dukat.JobSucceeded {
		t.Fatalf("rerun: %v %v", final.State, err)
	}
	fetch, _ := final.Task("fetch")
	load, _ := final.Task("load")
	if fetch.CarriedFrom != first.ID || load.CarriedFrom != "" {
		t.Fatalf("carried: fetch %q, load %q", fetch.CarriedFrom, load.CarriedFrom)
	}
	if result, ok := fetch.Result.(*dukat.ExecResult); !ok || string(result.Stdout) != "fetched\n" {
		t.Fatalf("fetch's result was not carried over: %#v", fetch.Result)
	}

	// The old job's own spec again (nil): load fails as before, fetch is carried once more.
	third, err := first.Rerun(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	final, err = third.Wait(ctx)
	if err != nil || final.State != dukat.JobFailed {
		t.Fatalf("rerun of its own spec: %v %v", final.State, err)
	}
	if fetch, _ := final.Task("fetch"); fetch.CarriedFrom != first.ID {
		t.Fatalf("fetch carried from %q", fetch.CarriedFrom)
	}

	if _, err := client.Rerun(ctx, "no-such-job", nil); !errors.Is(err, dukat.ErrNotFound) {
		t.Fatalf("rerun of an unknown job: %v", err)
	}
}

func TestATaskOnAQueueNobodyServesSaysWhatItWaitsFor(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	job, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("load", "nobody", []byte("x"))))
	if err != nil {
		t.Fatal(err)
	}
	var waiting *dukat.TaskWaiting
	for event, err := range job.Watch(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := event.(*dukat.TaskWaiting); ok {
			waiting = e
			break
		}
	}
	if waiting == nil || waiting.TaskID != "load" || waiting.Queue != "nobody" || waiting.WaitingFor == "" {
		t.Fatalf("TaskWaiting: %#v", waiting)
	}
	snapshot, err := job.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, _ := snapshot.Task("load")
	if task.WaitingForQueue != "nobody" || task.WaitingFor != waiting.WaitingFor {
		t.Fatalf("GetJob: waiting for %q on %q", task.WaitingFor, task.WaitingForQueue)
	}
	if _, err := job.Cancel(ctx, "done looking"); err != nil {
		t.Fatal(err)
	}
}
