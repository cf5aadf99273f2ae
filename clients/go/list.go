package dukat

import (
	"context"
	"iter"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// JobFilter chooses the jobs ListJobs lists; the zero filter lists every job.
type JobFilter struct {
	// States: only jobs in one of these states; empty: any state.
	States []JobState
	// Labels: only jobs that have every one of these labels, with the same value.
	Labels map[string]string
	// PageSize: jobs per call; 0 is the daemon's default (which it may cap).
	PageSize int
}

// ListJobs is every job the filter chooses, newest first, without their tasks
// (JobSnapshot.Counts says how they stand), fetched a page (ListJobs call) at a time as the
// loop goes on. An error is yielded once, last.
func (c *Client) ListJobs(ctx context.Context, filter JobFilter) iter.Seq2[JobSnapshot, error] {
	return func(yield func(JobSnapshot, error) bool) {
		request := &dukatv1.ListJobsRequest{Labels: filter.Labels, PageSize: int32(filter.PageSize)}
		for _, state := range filter.States {
			request.States = append(request.States, dukatv1.JobState(state))
		}
		for {
			response, err := call(ctx, c, true, c.scheduler.ListJobs, request)
			if err != nil {
				yield(JobSnapshot{}, err)
				return
			}
			for _, job := range response.GetJobs() {
				if !yield(jobFromProto(job), nil) {
					return
				}
			}
			if response.GetNextPageToken() == "" {
				return
			}
			request.PageToken = response.GetNextPageToken()
		}
	}
}
