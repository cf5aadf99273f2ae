package dukat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a call the daemon answered with an error status (the Python client's
// dukat.errors.DaemonError). Its Code is the gRPC status code; for INVALID_ARGUMENT,
// Violations are the google.rpc.BadRequest field violations the daemon sent (paths as the
// request names them: "job.tasks[2].dependencies") and TaskID the task at fault, when one
// is. Test for a code with errors.Is and the sentinels (errors.Is(err, dukat.ErrNotFound)),
// or read it with errors.As:
//
//	var daemonErr *dukat.Error
//	if errors.As(err, &daemonErr) && daemonErr.Code() == codes.InvalidArgument { ... }
//
// Errors of the caller's own context are not Errors: they are ctx.Err()
// (context.Canceled, context.DeadlineExceeded), as everywhere in Go.
type Error struct {
	code       codes.Code
	message    string
	taskID     string
	violations []FieldViolation
	sentinel   bool
}

// FieldViolation is one thing wrong with a request: the field's path and what is wrong.
type FieldViolation struct {
	Field       string
	Description string
}

// Sentinels for errors.Is, one per status code the daemon answers with (README, "gRPC
// status codes"); every other code still comes as an *Error carrying it.
var (
	ErrInvalidArgument    = sentinel(codes.InvalidArgument)    // a bad request; see Violations
	ErrNotFound           = sentinel(codes.NotFound)           // an unknown or dropped job, task or breaker
	ErrPermissionDenied   = sentinel(codes.PermissionDenied)   // exec tasks on a daemon without --allow-exec
	ErrUnauthenticated    = sentinel(codes.Unauthenticated)    // no token, or the wrong one
	ErrResourceExhausted  = sentinel(codes.ResourceExhausted)  // a limit of the daemon
	ErrFailedPrecondition = sentinel(codes.FailedPrecondition) // a Work stream that broke the protocol
	ErrDeadlineExceeded   = sentinel(codes.DeadlineExceeded)   // a worker silent past its heartbeat timeout
	ErrUnavailable        = sentinel(codes.Unavailable)        // not reachable or draining, after the retries
	ErrUnimplemented      = sentinel(codes.Unimplemented)      // Work on a daemon that serves no workers
)

func sentinel(code codes.Code) *Error { return &Error{code: code, sentinel: true} }

// Code is the gRPC status code.
func (e *Error) Code() codes.Code { return e.code }

// Message is the status message, the daemon's words.
func (e *Error) Message() string { return e.message }

// TaskID is the task at fault, when the daemon named one ("task 'x': ..."); else "".
func (e *Error) TaskID() string { return e.taskID }

// Violations are the field violations of an INVALID_ARGUMENT (google.rpc.BadRequest).
func (e *Error) Violations() []FieldViolation { return e.violations }

// Error is "CODE: message", the code spelled as the Python client spells it
// ("INVALID_ARGUMENT: task 'c': dependency cycle: a -> b -> c -> a").
func (e *Error) Error() string {
	if e.message == "" {
		return "the daemon answered " + codeName(e.code)
	}
	return codeName(e.code) + ": " + e.message
}

// Is makes errors.Is(err, dukat.ErrNotFound) true for every *Error of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel && t.code == e.code
}

// GRPCStatus lets status.Code(err) and status.FromError(err) read the code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.code, e.message) }

// codeName spells a code as grpc's Python API does: InvalidArgument -> INVALID_ARGUMENT.
func codeName(code codes.Code) string {
	var b strings.Builder
	name := code.String()
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' && name[i-1] >= 'a' && name[i-1] <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// callError is the error of a failed call: the context's own error when it is what ended the
// call, else the status as an *Error (its BadRequest details decoded).
func callError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var daemonErr *Error
	if errors.As(err, &daemonErr) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return statusError(st)
}

func statusError(st *status.Status) *Error {
	e := &Error{code: st.Code(), message: st.Message()}
	if e.code == codes.InvalidArgument {
		e.taskID = taskIDOf(e.message)
		for _, detail := range st.Details() {
			if request, ok := detail.(*errdetails.BadRequest); ok {
				for _, v := range request.GetFieldViolations() {
					e.violations = append(e.violations, FieldViolation{v.GetField(), v.GetDescription()})
				}
			}
		}
	}
	return e
}

// taskIDOf reads the task the daemon's message names: it starts "task 'x': ..." when a task
// is at fault (dukatd.status); the wire has no field for it.
func taskIDOf(message string) string {
	rest, ok := strings.CutPrefix(message, "task ")
	if !ok {
		return ""
	}
	quoted, _, _ := strings.Cut(rest, ":")
	if len(quoted) >= 2 && quoted[0] == quoted[len(quoted)-1] && (quoted[0] == '\'' || quoted[0] == '"') {
		return quoted[1 : len(quoted)-1]
	}
	return ""
}

// invalidArgument is a request this client refuses before sending it, in the daemon's terms.
func invalidArgument(taskID, field, description string) *Error {
	message := description
	if taskID != "" {
		message = fmt.Sprintf("task '%s': %s", taskID, description) // as the daemon words it
	}
	return &Error{
		code: codes.InvalidArgument, message: message, taskID: taskID,
		violations: []FieldViolation{{field, description}},
	}
}

// CircuitBreakerError is a call refused by one of the daemon's circuit breakers: open (until
// RetryAfter has passed), or half-open with its trial calls taken.
type CircuitBreakerError struct {
	Name       string
	RetryAfter time.Duration
	HalfOpen   bool
}

func (e *CircuitBreakerError) Error() string {
	if e.HalfOpen {
		return fmt.Sprintf("circuit breaker %q is half-open and its trial calls are taken", e.Name)
	}
	return fmt.Sprintf("circuit breaker %q is open; next trial call in %.1fs", e.Name, e.RetryAfter.Seconds())
}
