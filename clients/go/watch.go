package dukat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// WatchOption configures Watch.
type WatchOption func(*watchSettings)

type watchSettings struct {
	after         int64
	jobEventsOnly bool
}

// After starts the watch after the event of this sequence: 0 (the default) from the first,
// JobSnapshot.LastSequence to follow on from a snapshot, the last sequence seen to resume.
func After(sequence int64) WatchOption {
	return func(s *watchSettings) { s.after = sequence }
}

// JobEventsOnly leaves the task events out (state changes, progress, output): job state
// changes and snapshots only, a few messages rather than two events per task. Sequences still
// number every event, so they jump.
func JobEventsOnly() WatchOption {
	return func(s *watchSettings) { s.jobEventsOnly = true }
}

// Watch is the job's events (see JobHandle.Watch).
func (c *Client) Watch(ctx context.Context, jobID string, options ...WatchOption) iter.Seq2[Event, error] {
	return c.Job(jobID).Watch(ctx, options...)
}

// Watch is the job's events, replayed then live, ending after its terminal event:
//
//	for event, err := range handle.Watch(ctx) {
//		if err != nil { return err }
//		...
//	}
//
// When the daemon goes away (UNAVAILABLE: a restart, a drain, a lost connection) the watch is
// opened again by the client's Reconnect policy after the last sequence yielded: no event
// twice, none missed. Events the daemon no longer holds come as one *Snapshot of the whole
// job. An error is yielded once, last. Breaking out of the loop ends the stream on the
// daemon too.
func (h *JobHandle) Watch(ctx context.Context, options ...WatchOption) iter.Seq2[Event, error] {
	var settings watchSettings
	for _, option := range options {
		option(&settings)
	}
	return func(yield func(Event, error) bool) {
		if settings.after < 0 {
			yield(nil, fmt.Errorf("dukat: After takes a sequence of 0 or more, not %d", settings.after))
			return
		}
		err := h.client.follow(ctx, h.ID, settings, func(event Event) bool { return yield(event, nil) })
		if err != nil {
			yield(nil, err)
		}
	}
}

// errStopped: the consumer stopped; not an error of the watch.
var errStopped = errors.New("stopped by the consumer")

// follow calls each with the job's events, resuming after the last one on UNAVAILABLE, until
// the job's end (nil), each returns false (nil) or an error.
func (c *Client) follow(ctx context.Context, jobID string, settings watchSettings, each func(Event) bool) error {
	last := settings.after
	retries := newBackoff(c.reconnect)
	for {
		err := c.followOnce(ctx, jobID, &last, settings.jobEventsOnly, retries, each)
		if err == nil || err == errStopped {
			return nil
		}
		if again, err := retries.retry(ctx, err); !again {
			return err
		}
	}
}

// followOnce is one Watch stream, from after *last; it moves *last on with each event.
func (c *Client) followOnce(ctx context.Context, jobID string, last *int64, jobEventsOnly bool,
	retries *backoff, each func(Event) bool) error {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel() // the consumer stopped early: end the stream on the daemon too
	request := &dukatv1.WatchRequest{JobId: jobID, AfterSequence: *last, JobEventsOnly: jobEventsOnly}
	stream, err := c.scheduler.Watch(streamCtx, request)
	if err != nil {
		return err
	}
	for {
		response, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		retries.reset()
		for _, message := range response.GetEvents() {
			if message.GetSequence() <= *last {
				continue // a replay overlapping what was yielded: never twice
			}
			*last = message.GetSequence()
			// nil: a kind newer than this client, or a breaker transition (no job's)
			if event := eventFromProto(message); event != nil && !each(event) {
				return errStopped
			}
		}
	}
}
