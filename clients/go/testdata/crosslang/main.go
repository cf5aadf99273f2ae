// Command crosslang is the Go side of the cross-language tests (tests/clients/test_crosslang.py),
// which build it and start it against a real dukatd with the TypeScript and Python sides. The
// Go worker of those tests is cmd/dukat-worker-example.
//
//	crosslang submit ADDRESS QUEUE     a job for QUEUE's worker, waited for
//	crosslang trip ADDRESS BREAKER     configure BREAKER to open after 2 failures, then fail twice
//
// Each prints one JSON line of what it saw, for the test to check.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: crosslang submit|trip ADDRESS QUEUE|BREAKER")
	}
	command, address, name := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := dukat.Dial(ctx, address)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	var seen any
	switch command {
	case "submit":
		seen, err = submit(ctx, client, name)
	case "trip":
		seen, err = trip(ctx, client, name)
	default:
		err = fmt.Errorf("unknown command %q: submit or trip", command)
	}
	if err != nil {
		log.Fatal(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(seen); err != nil {
		log.Fatal(err)
	}
}

type submitted struct {
	State    string            `json:"state"`
	Results  map[string]string `json:"results"`
	Progress [][]any           `json:"progress"` // [task id, fraction, message]
}

// submit runs hello -> world on queue and says how they ended and what progress was watched.
func submit(ctx context.Context, client *dukat.Client, queue string) (submitted, error) {
	job, err := client.Submit(ctx, dukat.Job(
		dukat.Dispatch("hello", queue, []byte("hello")),
		dukat.Dispatch("world", queue, []byte("world")).DependsOn("hello"),
	))
	if err != nil {
		return submitted{}, err
	}
	seen := submitted{Results: map[string]string{}, Progress: [][]any{}}
	for event, err := range job.Watch(ctx) {
		if err != nil {
			return seen, err
		}
		if p, ok := event.(*dukat.TaskProgress); ok {
			seen.Progress = append(seen.Progress, []any{p.TaskID, p.Fraction, p.Message})
		}
	}
	final, err := job.Wait(ctx)
	if err != nil {
		return seen, err
	}
	seen.State = final.State.String()
	for _, task := range final.Tasks {
		if result, ok := task.Result.(*dukat.DispatchResult); ok {
			seen.Results[task.ID] = string(result.Payload)
		}
	}
	return seen, nil
}

type tripped struct {
	State    string   `json:"state"`
	Failures []string `json:"failures"` // what each Do returned
}

// trip opens the daemon's breaker name with failures of Go calls.
func trip(ctx context.Context, client *dukat.Client, name string) (tripped, error) {
	breaker := client.Breaker(name)
	config := dukat.BreakerConfig{FailureThreshold: 2, Timeout: time.Minute}
	if _, err := breaker.Configure(ctx, config); err != nil {
		return tripped{}, err
	}
	var seen tripped
	down := errors.New("the downstream is down")
	for range config.FailureThreshold {
		err := breaker.Do(ctx, func() error { return down })
		if err != down {
			return seen, fmt.Errorf("Do gave %v, not the call's own error", err)
		}
		seen.Failures = append(seen.Failures, err.Error())
	}
	status, err := breaker.Get(ctx)
	seen.State = status.State.String()
	return seen, err
}
