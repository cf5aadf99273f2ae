// Command dukat-bench-worker serves a queue with a handler that does nothing, for
// bench/dispatch.py, which times the same no-op dispatch tasks through it and through the
// Python client's worker. It prints "ready" once the daemon has welcomed it, and drains on
// SIGTERM.
//
//	dukat-bench-worker -address unix:/tmp/d.sock -queue bench-go -concurrency 1000
package main

import (
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

func nothing(context.Context, *dukat.Task) ([]byte, error) { return nil, nil }

func main() {
	address := flag.String("address", "", "the daemon: unix:/path or host:port")
	queue := flag.String("queue", "bench", "the queue to serve")
	concurrency := flag.Int("concurrency", 1000, "attempts in flight at once (max_in_flight)")
	flag.Parse()

	client, err := dukat.Dial(context.Background(), *address)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	worker, err := client.NewWorker(nothing, dukat.WorkerOptions{Queues: []string{*queue}, Concurrency: *concurrency})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- worker.Run(context.Background()) }()
	if err := worker.WaitConnected(context.Background()); err != nil {
		log.Fatal(<-stopped)
	}
	fmt.Println("ready")

	signals, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	select {
	case err := <-stopped:
		log.Fatal(err)
	case <-signals.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	worker.Shutdown(drain)
}
