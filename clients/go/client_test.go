package dukat_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

func TestDialTakesTheDaemonsAddressForms(t *testing.T) {
	d := newDaemon(t)
	ctx := testContext(t)
	socket := strings.TrimPrefix(d.Address, "unix:")
	for _, address := range []string{d.Address, "unix://" + socket} {
		client, err := dukat.Dial(ctx, address)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if _, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("t", "q", nil))); err != nil {
			t.Fatalf("%s: %v", address, err)
		}
	}

	t.Setenv(dukat.AddressVariable, d.Address)
	client, err := dukat.Dial(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Submit(ctx, dukat.Job(dukat.Dispatch("t", "q", nil))); err != nil {
		t.Fatalf("by $%s: %v", dukat.AddressVariable, err)
	}

	_, err = dukat.Dial(ctx, socket)
	if err == nil || !strings.Contains(err.Error(), "write unix:"+socket) {
		t.Fatalf("a socket's path without unix: %v", err)
	}
	for _, bad := range []string{"unix:", "unix://host/path", "no-port", "host:http", ":7070", "unix-abstract:x"} {
		if _, err := dukat.Dial(ctx, bad); err == nil {
			t.Errorf("Dial(%q) took it", bad)
		}
	}
}

func TestDefaultAddressIsTheDaemons(t *testing.T) {
	for _, c := range []struct{ runtime, xdg, want string }{
		{"/run/dukatd", "/run/user/7", "unix:/run/dukatd/dukatd.sock"},
		{"/run/a:/run/b", "", "unix:/run/a/dukatd.sock"},
		{"relative", "/run/user/7", "unix:/run/user/7/dukatd.sock"},
		{"", "", "unix:/tmp/dukatd-"},
	} {
		t.Setenv("RUNTIME_DIRECTORY", c.runtime)
		t.Setenv("XDG_RUNTIME_DIR", c.xdg)
		if got := dukat.DefaultAddress(); !strings.HasPrefix(got, c.want) {
			t.Errorf("RUNTIME_DIRECTORY=%q XDG_RUNTIME_DIR=%q: %s, want %s", c.runtime, c.xdg, got, c.want)
		}
	}
}

func TestSubmitRidesOutADaemonRestartAndIsMadeOnce(t *testing.T) {
	d := newDaemon(t, journaled())
	client := d.Dial(t)
	ctx := testContext(t)
	job := dukat.Job(dukat.Dispatch("t", "q", nil))
	first, err := client.Submit(ctx, job, dukat.WithRequestID("order-42"))
	if err != nil {
		t.Fatal(err)
	}

	d.Stop(t)
	submitted := make(chan *dukat.JobHandle, 1)
	go func() { // meets no daemon while the next one starts (hundreds of ms), and retries
		handle, err := client.Submit(ctx, job, dukat.WithRequestID("order-42"))
		if err != nil {
			t.Errorf("Submit while the daemon is away: %v", err)
		}
		submitted <- handle
	}()
	d.Start(t)

	again := <-submitted
	if again == nil || again.ID != first.ID {
		t.Fatalf("the repeated Submit made job %v, not %s", again, first.ID)
	}
	var listed int
	for _, err := range client.ListJobs(ctx, dukat.JobFilter{}) {
		if err != nil {
			t.Fatal(err)
		}
		listed++
	}
	if listed != 1 {
		t.Fatalf("%d jobs on the daemon, want 1", listed)
	}
}

func TestACallGivesUpWhenNoDaemonComesBack(t *testing.T) {
	d := newDaemon(t)
	client := d.Dial(t, dukat.WithReconnect(dukat.Reconnect{
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Multiplier: 2,
		GiveUpAfter: 200 * time.Millisecond,
	}))
	d.Stop(t)
	started := time.Now()
	_, err := client.GetJob(testContext(t), "any")
	if !errors.Is(err, dukat.ErrUnavailable) || time.Since(started) < 200*time.Millisecond {
		t.Fatalf("GetJob with no daemon: %v after %v", err, time.Since(started))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := client.GetJob(ctx, "any"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetJob with a cancelled context: %v", err)
	}
}

func TestStatusSaysHowTheDaemonStands(t *testing.T) {
	d := newDaemon(t, flags("--resource", "licence=4"))
	client := d.Dial(t)
	ctx := testContext(t)
	worker, err := client.NewWorker(func(context.Context, *dukat.Task) ([]byte, error) { return nil, nil },
		dukat.WorkerOptions{Queues: []string{"q", "r"}, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, worker)
	if _, err := client.Breaker("db").Configure(ctx, dukat.BreakerConfig{}); err != nil {
		t.Fatal(err)
	}

	status, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.Version == "" || status.StartedAt.IsZero() || len(status.Listen) != 1 ||
		!strings.HasSuffix(status.Listen[0], "d.sock") || status.StateDir != "" || status.AllowExec {
		t.Fatalf("status %+v", status)
	}
	queues := fmt.Sprint(status.Queues)
	if queues != "[{q 1 3} {r 1 3}]" {
		t.Fatalf("queues %s", queues)
	}
	var licence dukat.ResourceStatus
	for _, r := range status.Resources {
		if r.Name == "licence" {
			licence = r
		}
	}
	if licence.Capacity != 4 || licence.Used != 0 {
		t.Fatalf("resources %+v", status.Resources)
	}
	breakers, err := client.Breakers(ctx)
	if err != nil || len(breakers) != 1 || breakers[0].Name != "db" || breakers[0].Config.FailureThreshold != 5 {
		t.Fatalf("breakers %+v, %v", breakers, err)
	}
}

func TestEachDialIsAClientOfItsOwnForTheWatchLimits(t *testing.T) {
	// On a unix socket every peer looks alike: only the dukat-client-id each Dial sends keeps
	// one client's watches from counting against another's.
	d := newDaemon(t, flags("--max-watch-streams-per-client", "1"))
	greedy, other := d.Dial(t), d.Dial(t)
	ctx := testContext(t)
	job, err := greedy.Submit(ctx, dukat.Job(dukat.Dispatch("t", "nobody-serves", nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	go func() {
		for range greedy.Watch(ctx, job.ID) { // open until the test ends
			select {
			case <-first:
			default:
				close(first)
			}
		}
	}()
	<-first
	for _, err := range greedy.Watch(ctx, job.ID) {
		if !errors.Is(err, dukat.ErrResourceExhausted) || !strings.Contains(err.Error(), "per client") {
			t.Fatalf("a second watch of the same client: %v", err)
		}
	}
	for event, err := range other.Watch(ctx, job.ID) {
		if err != nil {
			t.Fatalf("another client's watch: %v", err)
		}
		if event.Header().Sequence >= 1 {
			break
		}
	}
}
