// examples/dag/main.go: fetch (exec) -> shout (dispatch, served by this program) -> report (exec).
package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/dukat-dev/dukat/clients/go"
)

// shout is the worker's handler: payload in, result out.
func shout(ctx context.Context, task *dukat.Task) ([]byte, error) {
	return bytes.ToUpper(task.Payload), nil
}

func main() {
	ctx := context.Background()
	client, err := dukat.Dial(ctx, "") // $DUKAT_ADDRESS, else dukatd's default socket
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	worker, err := client.NewWorker(shout, dukat.WorkerOptions{Queues: []string{"shout"}})
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

	job, err := client.Submit(ctx, dukat.Job(
		dukat.Exec("fetch", "echo", "fetched 3 rows"),
		dukat.Dispatch("shout", "shout", []byte("hello")).DependsOn("fetch"),
		dukat.Exec("report", "echo", "reported").DependsOn("shout"),
	))
	if err != nil {
		log.Fatal(err)
	}
	final, err := job.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := worker.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	for _, task := range final.Tasks {
		said := task.Error
		switch result := task.Result.(type) {
		case *dukat.ExecResult:
			said = strings.TrimSpace(string(result.Stdout))
		case *dukat.DispatchResult:
			said = string(result.Payload)
		}
		fmt.Println(task.ID, task.State, said)
	}
	fmt.Println("job", final.State)
}
