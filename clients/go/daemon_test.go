package dukat_test

// The test fixture: a real dukatd from the repository's .venv on a unix socket in a
// temporary directory (as tests/dukatd/daemon_process.py does for Python), which a test can
// stop with SIGTERM and start again on the same socket, with or without a journal.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/dukat-dev/dukat/clients/go"
)

// within bounds every test's waits: long enough for a loaded 2-core machine, short enough
// that a hang fails rather than stalls.
const within = 30 * time.Second

// repository is the root of the repository: go test runs in clients/go.
var repository = func() string {
	root, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return root
}()

// Variables of the test's own environment that would change how the daemon runs.
var notInherited = map[string]bool{
	"NOTIFY_SOCKET": true, "WATCHDOG_USEC": true, "WATCHDOG_PID": true, "LISTEN_FDS": true,
}

// daemon is one dukatd process at a time on one socket.
type daemon struct {
	Address string // unix:/tmp/dukatd-go-.../d.sock
	dir     string
	argv    []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// options of newDaemon.
type daemonOption func(*daemonSettings)

type daemonSettings struct {
	journaled bool
	args      []string
}

// journaled: a state directory in the daemon's temporary directory instead of --ephemeral,
// so that a restart keeps the jobs.
func journaled() daemonOption { return func(s *daemonSettings) { s.journaled = true } }

// flags: more dukatd flags.
func flags(args ...string) daemonOption {
	return func(s *daemonSettings) { s.args = append(s.args, args...) }
}

// newDaemon starts a daemon and returns once its health says SERVING; the test fails with
// the daemon's log if it does not. At cleanup the daemon is killed and its directory removed.
func newDaemon(t testing.TB, options ...daemonOption) *daemon {
	t.Helper()
	d, err := launch(options...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

// launch is newDaemon for callers without a testing.TB (TestMain).
func launch(options ...daemonOption) (*daemon, error) {
	var settings daemonSettings
	for _, option := range options {
		option(&settings)
	}
	// In /tmp: a unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "dukatd-go-")
	if err != nil {
		return nil, err
	}
	d := &daemon{Address: "unix:" + filepath.Join(dir, "d.sock"), dir: dir}
	d.argv = []string{"--listen", d.Address, "--metrics-listen", "off"}
	if settings.journaled {
		d.argv = append(d.argv, "--state-dir", filepath.Join(dir, "state"))
	} else {
		d.argv = append(d.argv, "--ephemeral")
	}
	d.argv = append(d.argv, settings.args...)
	if err := d.start(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// Path is a file in the daemon's temporary directory.
func (d *daemon) Path(name string) string { return filepath.Join(d.dir, name) }

// Log is what the daemon wrote, every run of it.
func (d *daemon) Log() string {
	text, _ := os.ReadFile(d.Path("d.log"))
	return string(text)
}

func (d *daemon) start() error {
	log, err := os.OpenFile(d.Path("d.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(repository, ".venv", "bin", "dukatd"), d.argv...)
	cmd.Dir = repository
	cmd.Stdout, cmd.Stderr = log, log
	// The daemon dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "DUKATD_") && !notInherited[name] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.mu.Unlock()
	return d.waitServing(cmd, exited)
}

// waitServing polls the health service (which needs no token) until SERVING.
func (d *daemon) waitServing(cmd *exec.Cmd, exited chan struct{}) error {
	// Reconnect soon after a refused connection: the socket appears before the daemon serves.
	conn, err := grpc.NewClient(d.Address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond,
		}}),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(within)
	for {
		select {
		case <-exited:
			return fmt.Errorf("dukatd exited with %v before serving:\n%s", cmd.ProcessState, d.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		reply, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil && reply.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dukatd not SERVING within %v (last: %v):\n%s", within, err, d.Log())
		}
	}
}

// Stop stops the daemon as a supervisor does (SIGTERM: its drain) and waits for it; the test
// fails unless it exits 0.
func (d *daemon) Stop(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(within):
		t.Fatalf("dukatd still running %v after SIGTERM:\n%s", within, d.Log())
	}
	if !cmd.ProcessState.Success() {
		t.Fatalf("dukatd exited with %v after SIGTERM:\n%s", cmd.ProcessState, d.Log())
	}
}

// Signal sends the daemon a signal (SIGSTOP: a daemon that answers nothing, connections open).
func (d *daemon) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Start starts the daemon again, with the same flags on the same socket.
func (d *daemon) Start(t testing.TB) {
	t.Helper()
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
}

// Restart is Stop, then Start.
func (d *daemon) Restart(t testing.TB) {
	t.Helper()
	d.Stop(t)
	d.Start(t)
}

func (d *daemon) close() {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-exited
	}
	os.RemoveAll(d.dir)
}

// Dial is a client of the daemon, closed at cleanup.
func (d *daemon) Dial(t testing.TB, options ...dukat.Option) *dukat.Client {
	t.Helper()
	// What the client logs (a worker reconnecting) goes with the test's output.
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	options = append([]dukat.Option{dukat.WithLogger(logger)}, options...)
	client, err := dukat.Dial(context.Background(), d.Address, options...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// testContext is a context that ends with the test, or after `within`.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	return ctx
}

// eventually waits until condition holds, checking every few milliseconds.
func eventually(t testing.TB, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running is a worker's Run in the background.
type running struct {
	done chan struct{}
	err  error
}

// Wait waits for Run to return, and returns what it returned.
func (r *running) Wait() error {
	<-r.done
	return r.err
}

// serve runs a worker in the background until the test ends (or it stops) and returns once
// the daemon has welcomed it.
func serve(t testing.TB, worker *dukat.Worker) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = worker.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := r.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("worker.Run: %v", err)
		}
	})
	ready, stop := context.WithTimeout(context.Background(), within)
	defer stop()
	if err := worker.WaitConnected(ready); err != nil {
		t.Fatalf("worker not connected: %v", err)
	}
	return r
}
