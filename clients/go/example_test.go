package dukat_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

// A diamond of exec tasks, run by the daemon, waited for to the end.
func Example() {
	ctx := context.Background()
	client, err := dukat.Dial(ctx, "") // $DUKAT_ADDRESS, else dukatd's default socket
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	job, err := client.Submit(ctx, dukat.Job(
		dukat.Exec("fetch", "echo", "rows"),
		dukat.Exec("left", "true").DependsOn("fetch").Resources(dukat.CPU(0.5)),
		dukat.Exec("right", "true").DependsOn("fetch").Retry(dukat.Retries(3)),
		dukat.Exec("join", "echo", "joined").DependsOn("left", "right").Timeout(time.Minute),
	).Labels(map[string]string{"team": "data"}))
	if err != nil {
		log.Fatal(err)
	}
	final, err := job.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job", final.State)
	for _, task := range final.Tasks {
		result := task.Result.(*dukat.ExecResult)
		fmt.Printf("%s %s %q\n", task.ID, task.State, result.Stdout)
	}
	// Output:
	// job SUCCEEDED
	// fetch SUCCEEDED "rows\n"
	// left SUCCEEDED ""
	// right SUCCEEDED ""
	// join SUCCEEDED "joined\n"
}

// Following a job's events as they come; the loop ends after the job's terminal event.
func ExampleJobHandle_Watch() {
	ctx := context.Background()
	client, err := dukat.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	job, err := client.Submit(ctx, dukat.Job(dukat.Exec("hello", "echo", "hello")))
	if err != nil {
		log.Fatal(err)
	}

	for event, err := range job.Watch(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		switch e := event.(type) {
		case *dukat.TaskStateChanged:
			fmt.Println(e.Sequence, e.TaskID, e.State)
		case *dukat.TaskOutput:
			fmt.Println(e.Sequence, e.TaskID, e.Stream+":", e.Text)
		case *dukat.JobStateChanged:
			fmt.Println(e.Sequence, "job", e.State)
		}
	}
	// Output:
	// 1 job RUNNING
	// 2 hello READY
	// 3 hello RUNNING
	// 4 hello stdout: hello
	// 5 hello SUCCEEDED
	// 6 job SUCCEEDED
}

// A worker serving a queue, and a job of dispatch tasks it runs.
func ExampleClient_NewWorker() {
	ctx := context.Background()
	client, err := dukat.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	shout := func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		task.ReportProgress(0.5, "shouting")
		var words [][]byte
		for _, upstream := range task.UpstreamResults { // in the order of its dependencies
			words = append(words, upstream.Payload)
		}
		return bytes.Join(append(words, bytes.ToUpper(task.Payload)), []byte(" ")), nil
	}
	worker, err := client.NewWorker(shout, dukat.WorkerOptions{Queues: []string{"example-shout"}, Concurrency: 4})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		// Only a worker that cannot serve (a wrong token, a daemon that serves no workers)
		// ends with an error; unreported, the job below would wait for it for ever.
		if err := worker.Run(ctx); err != nil {
			log.Fatal(err)
		}
	}()
	defer worker.Shutdown(ctx) // drains: the attempts it holds finish first

	job, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("hello", "example-shout", []byte("hello")),
		dukat.Dispatch("world", "example-shout", []byte("world")).DependsOn("hello"),
	))
	if err != nil {
		log.Fatal(err)
	}
	final, err := job.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	world, _ := final.Task("world")
	fmt.Printf("%s %s\n", final.State, world.Result.(*dukat.DispatchResult).Payload)
	// Output: SUCCEEDED HELLO WORLD
}

// A handler's error fails the attempt; the task's RetryPolicy retries it, unless the handler
// knows no attempt can help.
func ExampleNonRetryable() {
	handler := func(ctx context.Context, task *dukat.Task) ([]byte, error) {
		if len(task.Payload) == 0 {
			return nil, dukat.NonRetryable(errors.New("an empty payload"))
		}
		select { // honour ctx: the daemon's cancel, the attempt's timeout
		case <-time.After(time.Second):
			return task.Payload, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	_ = handler
}

// One breaker guards a downstream for every process on the host, in any language.
func ExampleBreaker_Do() {
	ctx := context.Background()
	client, err := dukat.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	payments := client.Breaker("example-payments")
	if _, err := payments.Configure(ctx, dukat.BreakerConfig{FailureThreshold: 1, Timeout: time.Minute}); err != nil {
		log.Fatal(err)
	}

	charge := func() error { return errors.New("payments are down") }
	fmt.Println(payments.Do(ctx, charge))
	err = payments.Do(ctx, charge)
	var open *dukat.CircuitBreakerError
	if errors.As(err, &open) {
		fmt.Println("refused; the next trial call within", open.RetryAfter.Round(time.Minute))
	}
	// Output:
	// payments are down
	// refused; the next trial call within 1m0s
}

// A bad job is refused whole, with the task and field at fault.
func ExampleError() {
	ctx := context.Background()
	client, err := dukat.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	_, err = client.Submit(ctx, dukat.Job(
		dukat.Exec("fetch", "true"),
		dukat.Exec("parse", "true").DependsOn("fetch", "parse"),
	))
	var refused *dukat.Error
	if errors.As(err, &refused) && errors.Is(err, dukat.ErrInvalidArgument) {
		fmt.Println("task", refused.TaskID())
		for _, v := range refused.Violations() {
			fmt.Println(v.Field, "-", v.Description)
		}
	}
	// Output:
	// task parse
	// job.tasks[1].dependencies[1] - a task cannot depend on itself
}
