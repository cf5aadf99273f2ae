// Command dukat-worker-example serves the dispatch tasks of one queue with a Go handler: it
// upper-cases each task's payload after the payloads of its dependencies ("hello" then
// "world" gives "HELLO WORLD"), reporting progress on the way. A job submitted from any
// language (Python's dukat.client, the dukat command line, another Go program) is served by
// it; SIGTERM or Ctrl-C drains it (the attempts it holds finish) before it exits.
//
//	dukat-worker-example -address unix:/run/dukatd/dukatd.sock -queue shout -concurrency 4
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

func shout(ctx context.Context, task *dukat.Task) ([]byte, error) {
	if err := task.ReportProgress(0.5, "shouting "+task.TaskID); err != nil {
		return nil, err
	}
	var words [][]byte
	for _, upstream := range task.UpstreamResults {
		if upstream.State != dukat.TaskSucceeded {
			return nil, dukat.NonRetryable(fmt.Errorf("upstream %s %s: %s", upstream.TaskID, upstream.State, upstream.Error))
		}
		words = append(words, upstream.Payload)
	}
	return bytes.Join(append(words, bytes.ToUpper(task.Payload)), []byte(" ")), nil
}

func main() {
	address := flag.String("address", "", "the daemon: unix:/path or host:port (default $DUKAT_ADDRESS, else dukatd's default socket)")
	queue := flag.String("queue", "shout", "the queue to serve")
	concurrency := flag.Int("concurrency", 4, "attempts run at once")
	tokenFile := flag.String("token-file", os.Getenv("DUKAT_TOKEN_FILE"),
		"file holding the daemon's bearer token, if it wants one (default $DUKAT_TOKEN_FILE)")
	grace := flag.Duration("drain-grace", 30*time.Second, "on SIGTERM, how long the attempts held may take to finish")
	flag.Parse()

	var options []dukat.Option
	if *tokenFile != "" {
		options = append(options, dukat.WithTokenFile(*tokenFile))
	}
	client, err := dukat.Dial(context.Background(), *address, options...)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	worker, err := client.NewWorker(shout, dukat.WorkerOptions{Queues: []string{*queue}, Concurrency: *concurrency})
	if err != nil {
		log.Fatal(err)
	}

	// Run is not given the signal's context: a signal drains (Shutdown), it does not cut.
	stopped := make(chan error, 1)
	go func() { stopped <- worker.Run(context.Background()) }()
	signals, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		if worker.WaitConnected(signals) == nil {
			fmt.Printf("serving queue %q as %s\n", *queue, worker.ID())
		}
	}()
	select {
	case err := <-stopped:
		log.Fatal(err) // a wrong token, a daemon serving no workers, ...
	case <-signals.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := worker.Shutdown(drain); err != nil {
		log.Fatalf("drain: %v", err)
	}
	if err := <-stopped; err != nil {
		log.Fatal(err)
	}
}
