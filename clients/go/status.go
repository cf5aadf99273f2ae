package dukat

import (
	"context"
	"time"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// DaemonStatus is a daemon at one moment (DaemonService.GetStatus; `dukat status`).
type DaemonStatus struct {
	// Version is the daemon's version (the dukat package's).
	Version   string
	StartedAt time.Time
	// Listen are the addresses it serves, as given to --listen.
	Listen []string
	// StateDir is the directory of its journal; "" when it keeps nothing (--ephemeral).
	StateDir       string
	AllowExec      bool
	MaxConcurrency int
	TasksRunning   int
	// JobsLive are the jobs held that have not finished, JobsFinished those kept after.
	JobsLive, JobsFinished int
	// Resources are every resource of the pool, sorted by name.
	Resources []ResourceStatus
	// Queues are the queues that connected workers serve, sorted by name.
	Queues []QueueStatus
}

// ResourceStatus is one resource of the daemon's pool: how much there is, how much running
// tasks hold.
type ResourceStatus struct {
	Name           string
	Capacity, Used float64
}

// QueueStatus is a queue of dispatch tasks: the workers connected that serve it, and the
// attempts they may hold at once, together.
type QueueStatus struct {
	Name           string
	Workers, Slots int
}

// Status is the daemon's version, start, addresses and capacity in use now.
func (c *Client) Status(ctx context.Context) (DaemonStatus, error) {
	response, err := call(ctx, c, true, c.daemon.GetStatus, &dukatv1.GetStatusRequest{})
	if err != nil {
		return DaemonStatus{}, err
	}
	s := response.GetStatus()
	status := DaemonStatus{
		Version: s.GetVersion(), StartedAt: timeOf(s.GetStartedAt()), Listen: s.GetListen(),
		StateDir: s.GetStateDir(), AllowExec: s.GetAllowExec(), MaxConcurrency: int(s.GetMaxConcurrency()),
		TasksRunning: int(s.GetTasksRunning()), JobsLive: int(s.GetJobsLive()),
		JobsFinished: int(s.GetJobsFinished()),
	}
	for _, r := range s.GetResources() {
		status.Resources = append(status.Resources, ResourceStatus{r.GetName(), r.GetCapacity(), r.GetUsed()})
	}
	for _, q := range s.GetQueues() {
		status.Queues = append(status.Queues, QueueStatus{q.GetName(), int(q.GetWorkers()), int(q.GetSlots())})
	}
	return status, nil
}

// Breakers are every breaker the daemon knows, sorted by name.
func (c *Client) Breakers(ctx context.Context) ([]BreakerStatus, error) {
	response, err := call(ctx, c, true, c.breakers.ListBreakers, &dukatv1.ListBreakersRequest{})
	if err != nil {
		return nil, err
	}
	breakers := make([]BreakerStatus, len(response.GetBreakers()))
	for i, b := range response.GetBreakers() {
		breakers[i] = breakerFromProto(b)
	}
	return breakers, nil
}
