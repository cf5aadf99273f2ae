package dukat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// WorkError is how an attempt of a dispatch task failed, as the daemon is told (work.proto
// WorkError). A Handler returns any error: a plain one becomes a WorkError that is retryable
// (by the task's RetryPolicy) unless WorkerOptions.Retryable says otherwise; NonRetryable(err)
// fails the task at once whatever attempts are left; a *WorkError of the handler's own (also
// wrapped) is sent as it is: Retryable false unless set.
type WorkError struct {
	// Message is the error in words.
	Message string
	// Type is the error's kind, for people and logs (a Go type name, as "fs.PathError").
	Type string
	// Retryable: another attempt may help.
	Retryable bool
	// Err is the error this one stands for, if any (errors.Is and errors.As see it).
	Err error
}

func (e *WorkError) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

func (e *WorkError) Unwrap() error { return e.Err }

// NonRetryable marks err as one no further attempt can help: the task fails now, whatever
// attempts its RetryPolicy has left. nil stays nil.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	return &WorkError{Message: err.Error(), Type: errorType(err), Retryable: false, Err: err}
}

// workError is the wire form of a handler's error.
func workError(err error, retryable func(error) bool) *dukatv1.WorkError {
	var own *WorkError
	if errors.As(err, &own) {
		return &dukatv1.WorkError{Message: own.Message, Type: own.Type, Retryable: own.Retryable}
	}
	return &dukatv1.WorkError{Message: err.Error(), Type: errorType(err), Retryable: retryable(err)}
}

// Wrappers that say nothing of an error's kind: errorType looks through them.
var genericErrorTypes = map[string]bool{
	"*fmt.wrapError": true, "*fmt.wrapErrors": true, "*errors.errorString": true,
	"*errors.joinError": true,
}

// errorType names an error's kind: the first type along its chain that is not a generic
// wrapper ("fs.PathError"); "Canceled" and "DeadlineExceeded" for a context's; else "error".
func errorType(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	}
	for ; err != nil; err = errors.Unwrap(err) {
		if name := fmt.Sprintf("%T", err); !genericErrorTypes[name] {
			return strings.TrimPrefix(name, "*")
		}
	}
	return "error"
}

// truncate cuts text to at most n bytes, on a rune boundary.
func truncate(text string, n int) string {
	if len(text) <= n {
		return text
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut]
}
