package dukat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dukat-dev/dukat/clients/go"
)

// events is every event of a watch, failing the test on its error.
func events(t *testing.T, watch func(func(dukat.Event, error) bool)) []dukat.Event {
	t.Helper()
	var all []dukat.Event
	for event, err := range watch {
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		all = append(all, event)
	}
	return all
}

// describe is an event in words, without its time: what two watches of one job must agree on.
func describe(event dukat.Event) string {
	switch e := event.(type) {
	case *dukat.JobStateChanged:
		return fmt.Sprintf("%d job %s %q", e.Sequence, e.State, e.Message)
	case *dukat.TaskStateChanged:
		return fmt.Sprintf("%d task %s %s attempt %d %q", e.Sequence, e.TaskID, e.State, e.Attempt, e.Message)
	case *dukat.TaskProgress:
		return fmt.Sprintf("%d progress %s %v/%v %q", e.Sequence, e.TaskID, e.Fraction, e.HasFraction, e.Message)
	case *dukat.TaskOutput:
		return fmt.Sprintf("%d output %s %s %q", e.Sequence, e.TaskID, e.Stream, e.Text)
	case *dukat.Snapshot:
		return fmt.Sprintf("%d snapshot %s", e.Sequence, e.Job.State)
	}
	return fmt.Sprintf("%T", event)
}

// succeeded is the order in which tasks succeeded.
func succeeded(all []dukat.Event) []string {
	var ids []string
	for _, event := range all {
		if e, ok := event.(*dukat.TaskStateChanged); ok && e.State == dukat.TaskSucceeded {
			ids = append(ids, e.TaskID)
		}
	}
	return ids
}

func TestADiamondOfExecTasksIsWatchedToItsEnd(t *testing.T) {
	client := newDaemon(t, flags("--allow-exec")).Dial(t)
	ctx := testContext(t)
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Exec("fetch", "sh", "-c", "echo fetched"),
		dukat.Exec("left", "true").DependsOn("fetch").Resources(dukat.CPU(0.5)),
		dukat.Exec("right", "true").DependsOn("fetch").Resources(dukat.Memory(0.25)),
		dukat.Exec("join", "sh", "-c", "echo joined $SIDE").DependsOn("left", "right").
			Env(map[string]string{"SIDE": "both"}),
	).Labels(map[string]string{"test": "diamond"}))
	if err != nil {
		t.Fatal(err)
	}

	all := events(t, job.Watch(ctx))

	for i, event := range all {
		if event.Header().Sequence != int64(i+1) || event.Header().JobID != job.ID {
			t.Fatalf("event %d is %s of job %s", i, describe(event), event.Header().JobID)
		}
	}
	last, ok := all[len(all)-1].(*dukat.JobStateChanged)
	if !ok || last.State != dukat.JobSucceeded {
		t.Fatalf("the watch ended on %s, not the job's success", describe(all[len(all)-1]))
	}
	order := succeeded(all)
	if len(order) != 4 || order[0] != "fetch" || order[3] != "join" {
		t.Fatalf("tasks succeeded in the order %v; want fetch first, join last", order)
	}
	var output []string
	for _, event := range all {
		if e, ok := event.(*dukat.TaskOutput); ok {
			output = append(output, e.TaskID+" "+e.Stream+" "+strings.TrimSpace(e.Text))
		}
	}
	if !slices.Equal(output, []string{"fetch stdout fetched", "join stdout joined both"}) {
		t.Fatalf("output events %q", output)
	}

	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != dukat.JobSucceeded || len(final.Tasks) != 4 || final.Labels["test"] != "diamond" {
		t.Fatalf("Wait gave %+v", final)
	}
	joined, _ := final.Task("join")
	if result, ok := joined.Result.(*dukat.ExecResult); !ok || string(result.Stdout) != "joined both\n" {
		t.Fatalf("join's result %#v", joined.Result)
	}
	if final.FinishedAt.Before(final.CreatedAt) || final.LastSequence != last.Sequence {
		t.Fatalf("times %v..%v, last sequence %d (terminal event %d)",
			final.CreatedAt, final.FinishedAt, final.LastSequence, last.Sequence)
	}
}

func TestAWatchResumesAcrossADaemonRestartWithoutGapOrDuplicate(t *testing.T) {
	d := newDaemon(t, journaled(), flags("--allow-exec", "--shutdown-grace", "100ms", "--kill-grace", "100ms"))
	client := d.Dial(t)
	ctx := testContext(t)
	gate := d.Path("gate")
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Exec("before", "true"),
		// Runs until the test opens the gate; the restart interrupts it, and it runs again.
		dukat.Exec("gated", "sh", "-c", `while [ ! -e "$GATE" ]; do sleep 0.02; done; echo through`).
			Env(map[string]string{"GATE": gate}).DependsOn("before"),
		dukat.Exec("after", "true").DependsOn("gated"),
	))
	if err != nil {
		t.Fatal(err)
	}

	var seen []dukat.Event
	restarted := false
	for event, err := range job.Watch(ctx) {
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		seen = append(seen, event)
		e, ok := event.(*dukat.TaskStateChanged)
		if ok && e.TaskID == "gated" && e.State == dukat.TaskRunning {
			if !restarted {
				d.Restart(t) // the watch is open on the daemon being stopped
				restarted = true
			} else if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	replay := events(t, job.Watch(ctx)) // from the journal, after the restart
	if len(seen) != len(replay) {
		t.Fatalf("the resumed watch saw %d events, the journal holds %d", len(seen), len(replay))
	}
	for i := range seen {
		if describe(seen[i]) != describe(replay[i]) || seen[i].Header().Sequence != int64(i+1) {
			t.Fatalf("event %d: watched %s, replayed %s", i, describe(seen[i]), describe(replay[i]))
		}
	}
	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gated, _ := final.Task("gated")
	if final.State != dukat.JobSucceeded || gated.Attempts != 2 || gated.Interruptions != 1 {
		t.Fatalf("job %s, gated ran %d attempts, %d interrupted (want 2, one cut by the restart)",
			final.State, gated.Attempts, gated.Interruptions)
	}
}

func TestAFailedExecTaskKeepsItsEvidence(t *testing.T) {
	client := newDaemon(t, flags("--allow-exec")).Dial(t)
	ctx := testContext(t)
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Exec("broken", "sh", "-c", "echo partial; echo oops >&2; exit 3"),
		dukat.Exec("after", "true").DependsOn("broken"),
	))
	if err != nil {
		t.Fatal(err)
	}
	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	broken, _ := final.Task("broken")
	after, _ := final.Task("after")
	failure := broken.Failure
	if final.State != dukat.JobFailed || broken.State != dukat.TaskFailed || failure == nil ||
		failure.Type != "TaskProcessError" || failure.ExitCode != 3 || failure.Signal != 0 ||
		string(failure.Stdout) != "partial\n" || string(failure.Stderr) != "oops\n" ||
		!strings.Contains(failure.Message, "exited with code 3") || broken.Result != nil {
		t.Fatalf("job %s, broken %s %q %+v", final.State, broken.State, broken.Error, failure)
	}
	if after.State != dukat.TaskSkipped || after.Failure != nil {
		t.Fatalf("after: %s %+v", after.State, after.Failure)
	}
}

func TestCancelStopsTasksAndTheirDownstreamWithItsReason(t *testing.T) {
	// Two sleeps, one with a dependent; once both run, the first and what depends on it are
	// cancelled, then the rest, each with a reason of its own.
	client := newDaemon(t, flags("--allow-exec")).Dial(t)
	ctx := testContext(t)
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Exec("sleep", "sleep", "60"),
		dukat.Exec("then", "true").DependsOn("sleep"),
		dukat.Exec("alone", "sleep", "60"),
	))
	if err != nil {
		t.Fatal(err)
	}
	for event, err := range job.Watch(ctx) { // until both sleeps run
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := event.(*dukat.TaskStateChanged); ok && e.TaskID == "alone" && e.State == dukat.TaskRunning {
			break
		}
	}

	count, err := client.Cancel(ctx, job.ID, "the operator changed her mind", "sleep")
	if err != nil || count != 2 {
		t.Fatalf("cancelling sleep and downstream: %d tasks, %v (want 2)", count, err)
	}
	count, err = job.Cancel(ctx, "done for the day")
	if err != nil || count != 1 {
		t.Fatalf("cancelling the rest: %d tasks, %v (want 1)", count, err)
	}
	if again, err := job.Cancel(ctx, "again"); err != nil || again != 0 {
		t.Fatalf("a repeated cancel: %d tasks, %v (want 0)", again, err)
	}
	final, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != dukat.JobCancelled || final.Counts.Cancelled != 3 {
		t.Fatalf("job %s %q, counts %+v; want CANCELLED, 3 tasks cancelled", final.State, final.Message, final.Counts)
	}
	for _, task := range final.Tasks {
		want := "the operator changed her mind"
		if task.ID == "alone" {
			want = "done for the day"
		}
		if task.State != dukat.TaskCancelled || !strings.Contains(task.Error, want) {
			t.Errorf("task %s: %s %q, want CANCELLED with the reason %q", task.ID, task.State, task.Error, want)
		}
	}
}

func TestACycleIsRefusedAsAnInvalidArgumentNamingIt(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	_, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("a", "q", nil).DependsOn("c"),
		dukat.Dispatch("b", "q", nil).DependsOn("a"),
		dukat.Dispatch("c", "q", nil).DependsOn("b"),
	))

	var refused *dukat.Error
	if !errors.As(err, &refused) || !errors.Is(err, dukat.ErrInvalidArgument) {
		t.Fatalf("Submit of a cycle: %v, want a dukat.Error INVALID_ARGUMENT", err)
	}
	if refused.Code() != codes.InvalidArgument || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code %v, grpc status %v", refused.Code(), status.Code(err))
	}
	if len(refused.Violations()) == 0 {
		t.Fatalf("no violations in %v", err)
	}
	v := refused.Violations()[0]
	if !strings.HasPrefix(v.Field, "job.tasks[") || !strings.HasSuffix(v.Field, "dependencies") ||
		!strings.Contains(v.Description, "dependency cycle: ") {
		t.Fatalf("violation %+v", v)
	}
	if refused.TaskID() == "" || !strings.Contains(err.Error(), "INVALID_ARGUMENT: task '"+refused.TaskID()+"'") {
		t.Fatalf("task %q, message %q", refused.TaskID(), err)
	}
	if errors.Is(err, dukat.ErrNotFound) {
		t.Fatal("an INVALID_ARGUMENT is also ErrNotFound")
	}
}

func TestAnOptionOfTheOtherKindOfTaskIsRefusedBeforeSending(t *testing.T) {
	client := newDaemon(t).Dial(t)
	_, err := client.Submit(testContext(t), dukat.Job(
		dukat.Exec("ok", "true"),
		dukat.Dispatch("d", "q", nil).Cwd("/tmp"),
	))
	var refused *dukat.Error
	if !errors.As(err, &refused) || refused.TaskID() != "d" ||
		refused.Violations()[0].Field != "job.tasks[1].exec.cwd" {
		t.Fatalf("Cwd on a dispatch task: %v", err)
	}
}

func TestATokenProtectedDaemonRefusesCallsWithoutIt(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, flags("--token-file", tokenFile))
	ctx := testContext(t)
	job := dukat.Job(dukat.Dispatch("t", "q", nil))

	for name, client := range map[string]*dukat.Client{
		"no token":    d.Dial(t),
		"wrong token": d.Dial(t, dukat.WithToken("guess")),
	} {
		_, err := client.Submit(ctx, job)
		var refused *dukat.Error
		if !errors.Is(err, dukat.ErrUnauthenticated) || !errors.As(err, &refused) {
			t.Fatalf("%s: %v, want UNAUTHENTICATED", name, err)
		}
	}
	worker, err := d.Dial(t).NewWorker(func(context.Context, *dukat.Task) ([]byte, error) { return nil, nil },
		dukat.WorkerOptions{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Run(ctx); !errors.Is(err, dukat.ErrUnauthenticated) {
		t.Fatalf("a worker without the token: %v, want UNAUTHENTICATED", err)
	}
	for name, option := range map[string]dukat.Option{
		"token":      dukat.WithToken("s3cret-token"),
		"token file": dukat.WithTokenFile(tokenFile),
	} {
		if _, err := d.Dial(t, option).Submit(ctx, job); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestListJobsPagesThroughEveryJobAndFilters(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	var ids []string
	for i := range 5 {
		team := []string{"data", "web"}[i%2]
		job, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("t", "nobody-serves", nil)).
			Labels(map[string]string{"team": team}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, job.ID)
	}
	if _, err := client.Cancel(ctx, ids[4], "to have one cancelled"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cancelled job ends", func() bool {
		job, err := client.GetJob(ctx, ids[4])
		return err == nil && job.State == dukat.JobCancelled
	})

	list := func(filter dukat.JobFilter) []string {
		var listed []string
		for job, err := range client.ListJobs(ctx, filter) {
			if err != nil {
				t.Fatal(err)
			}
			if job.Tasks != nil || job.Counts.Ready+job.Counts.Cancelled != 1 {
				t.Fatalf("listed job %s has tasks %v, counts %+v", job.JobID, job.Tasks, job.Counts)
			}
			listed = append(listed, job.JobID)
		}
		return listed
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)
	if all := list(dukat.JobFilter{PageSize: 2}); !slices.Equal(all, newestFirst) {
		t.Fatalf("listed %v, want %v", all, newestFirst)
	}
	if data := list(dukat.JobFilter{Labels: map[string]string{"team": "data"}}); !slices.Equal(data, []string{ids[4], ids[2], ids[0]}) {
		t.Fatalf("team data: %v", data)
	}
	if cancelled := list(dukat.JobFilter{States: []dukat.JobState{dukat.JobCancelled}}); !slices.Equal(cancelled, ids[4:]) {
		t.Fatalf("cancelled: %v", cancelled)
	}
	for range client.ListJobs(ctx, dukat.JobFilter{PageSize: 1}) {
		break // stopping early is fine
	}
}

func TestAnUnknownJobIsNotFound(t *testing.T) {
	client := newDaemon(t).Dial(t)
	ctx := testContext(t)
	if _, err := client.GetJob(ctx, "no-such-job"); !errors.Is(err, dukat.ErrNotFound) {
		t.Fatalf("GetJob: %v", err)
	}
	for _, err := range client.Watch(ctx, "no-such-job") {
		if !errors.Is(err, dukat.ErrNotFound) {
			t.Fatalf("Watch: %v", err)
		}
	}
}

func TestWaitPollsWhenTheDaemonRefusesItAWatch(t *testing.T) {
	d := newDaemon(t, flags("--allow-exec", "--max-watch-streams", "1"))
	client := d.Dial(t)
	ctx := testContext(t)
	hog, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("never", "nobody-serves", nil)))
	if err != nil {
		t.Fatal(err)
	}
	watching := make(chan struct{})
	go func() {
		once := sync.OnceFunc(func() { close(watching) })
		for range hog.Watch(ctx) { // holds the only Watch stream open until the test ends
			once()
		}
	}()
	<-watching
	job, err := client.Submit(ctx, dukat.Job(dukat.Exec("quick", "sleep", "0.2")))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range job.Watch(ctx) {
		if !errors.Is(err, dukat.ErrResourceExhausted) {
			t.Fatalf("a second Watch: %v, want RESOURCE_EXHAUSTED", err)
		}
	}

	final, err := job.Wait(ctx)
	if err != nil || final.State != dukat.JobSucceeded || len(final.Tasks) != 1 {
		t.Fatalf("Wait: %+v, %v", final, err)
	}
}

// started is how many calls of method the daemon's metrics (on 127.0.0.1:port) count.
func started(t *testing.T, port int, method string) int {
	t.Helper()
	response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0 // not serving yet
	}
	defer response.Body.Close()
	text, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "grpc_server_started_total{") && strings.Contains(line, `grpc_method="`+method+`"`) {
			var count float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &count)
			return int(count)
		}
	}
	return 0
}

// freePort is a TCP port of 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

func TestWaitGivesTheEndOfAJobThatRetentionDropsAsItEnds(t *testing.T) {
	port := freePort(t)
	d := newDaemon(t, flags("--retain-finished-jobs", "0", "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port)))
	client := d.Dial(t)
	ctx := testContext(t)
	release := make(chan struct{})
	serve(t, newWorker(t, client, func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		<-release
		return nil, nil
	}, dukat.WorkerOptions{Queues: []string{"q"}}))
	job, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("t", "q", nil)).Labels(map[string]string{"team": "data"}))
	if err != nil {
		t.Fatal(err)
	}
	seen, err := job.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type waited struct {
		job dukat.JobSnapshot
		err error
	}
	done := make(chan waited, 1)
	go func() {
		final, err := job.Wait(ctx)
		done <- waited{final, err}
	}()
	eventually(t, "Wait watches the job", func() bool { return started(t, port, "Watch") == 1 })
	close(release)

	w := <-done
	if w.err != nil {
		t.Fatal(w.err)
	}
	if _, err := job.Get(ctx); !errors.Is(err, dukat.ErrNotFound) {
		t.Fatalf("the job is still there (%v): the test shows nothing", err)
	}
	final := w.job
	if final.JobID != job.ID || final.State != dukat.JobSucceeded || final.Tasks != nil ||
		final.Labels["team"] != "data" || !final.CreatedAt.Equal(seen.CreatedAt) ||
		final.FinishedAt.Before(final.CreatedAt) || final.LastSequence <= seen.LastSequence ||
		final.Message != "1 tasks succeeded" {
		t.Fatalf("Wait gave %+v (seen before: %+v)", final, seen)
	}
}
