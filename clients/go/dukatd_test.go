package dukat_test

// A real dukatd from the repository's .venv on a unix socket in a temporary directory, for the
// proof that the generated code and grpc-go reach the daemon (as tests/dukatd/daemon_process.py
// does for Python).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// Variables of the test's own environment that would change how the daemon runs.
var notInherited = map[string]bool{
	"NOTIFY_SOCKET": true, "WATCHDOG_USEC": true, "WATCHDOG_PID": true, "LISTEN_FDS": true,
}

// startDukatd starts a daemon with args and returns a client of it once its health says
// SERVING; the test fails with the daemon's log if it exits first. At cleanup the daemon is
// SIGKILLed and its directory removed.
func startDukatd(t *testing.T, args ...string) dukatv1.SchedulerServiceClient {
	t.Helper()
	repo, err := filepath.Abs("../..") // go test runs in clients/go
	if err != nil {
		t.Fatal(err)
	}
	// In /tmp: a unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "dukatd-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	address := "unix:" + filepath.Join(dir, "d.sock")
	logPath := filepath.Join(dir, "d.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()

	argv := append([]string{"--listen", address, "--ephemeral", "--metrics-listen", "off"}, args...)
	cmd := exec.Command(filepath.Join(repo, ".venv", "bin", "dukatd"), argv...)
	cmd.Dir = repo
	cmd.Stdout, cmd.Stderr = log, log
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "DUKATD_") && !notInherited[name] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	daemonLog := func() string { text, _ := os.ReadFile(logPath); return string(text) }

	// Reconnect soon after a refused connection: the socket appears before the daemon listens.
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond,
		}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("dukatd exited with %v before serving:\n%s", cmd.ProcessState, daemonLog())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		reply, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil && reply.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return dukatv1.NewSchedulerServiceClient(conn)
		}
		if time.Now().After(deadline) {
			t.Fatalf("dukatd not SERVING within 15s (last: %v):\n%s", err, daemonLog())
		}
	}
}
