package dukat_test

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// build builds a command of this module into the test's temporary directory.
func build(t *testing.T, pkg string) string {
	t.Helper()
	binary := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", binary, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return binary
}

func TestPythonSubmitsAndAGoWorkerServes(t *testing.T) {
	d := newDaemon(t)
	worker := exec.Command(build(t, "./cmd/dukat-worker-example"), "-address", d.Address, "-queue", "shout")
	stdout, err := worker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	worker.Stderr = &stderr
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Process.Kill(); worker.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), `serving queue "shout"`) {
		t.Fatalf("the Go worker said %q; stderr:\n%s", lines.Text(), stderr.String())
	}

	python := filepath.Join(repository, ".venv", "bin", "python")
	submit := exec.CommandContext(testContext(t), python, filepath.Join("testdata", "submit_and_wait.py"), d.Address, "shout")
	out, err := submit.Output()
	if err != nil {
		t.Fatalf("the Python client: %v\n%s", err, err.(*exec.ExitError).Stderr)
	}
	var got struct {
		State    string
		Results  map[string]string
		Progress []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := map[string]string{"hello": "HELLO", "world": "HELLO WORLD"}
	if got.State != "SUCCEEDED" || !reflect.DeepEqual(got.Results, want) ||
		strings.Join(got.Progress, ", ") != "shouting hello, shouting world" {
		t.Fatalf("Python saw %+v", got)
	}

	// SIGTERM drains the Go worker, which then exits 0.
	if err := worker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := worker.Wait(); err != nil {
		t.Fatalf("the Go worker after SIGTERM: %v\n%s", err, stderr.String())
	}
}
