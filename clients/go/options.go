package dukat

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// DefaultMaxMessageBytes is the largest message sent or received unless
// WithMaxMessageBytes says otherwise: dukatd's default --max-message-bytes, room for a
// 100,000-task Submit.
const DefaultMaxMessageBytes = 64 * 1024 * 1024

// Option configures Dial.
type Option func(*settings)

type settings struct {
	token           string
	tokenFile       string
	tls             *tls.Config
	maxMessageBytes int
	reconnect       Reconnect
	logger          *slog.Logger
}

// WithToken sends `authorization: Bearer <token>` with every call, for a daemon started with
// --token-file.
func WithToken(token string) Option { return func(s *settings) { s.token = token } }

// WithTokenFile reads the token from a file at Dial (its content without surrounding
// whitespace, as dukatd reads its --token-file), and sends it as WithToken does.
func WithTokenFile(path string) Option { return func(s *settings) { s.tokenFile = path } }

// WithTLS speaks TLS to the daemon (a TCP address beyond loopback needs it), with config as
// crypto/tls takes it: nil RootCAs trusts the host's roots.
func WithTLS(config *tls.Config) Option { return func(s *settings) { s.tls = config } }

// WithMaxMessageBytes sets the largest message sent or received (default
// DefaultMaxMessageBytes, the daemon's default); at least 1024.
func WithMaxMessageBytes(n int) Option { return func(s *settings) { s.maxMessageBytes = n } }

// WithReconnect sets how calls ride out an unreachable daemon (default DefaultReconnect).
// A Worker has its own policy: WorkerOptions.Reconnect.
func WithReconnect(policy Reconnect) Option { return func(s *settings) { s.reconnect = policy } }

// WithLogger sets where a Worker and a Breaker say what they cannot return as errors (a
// stream lost and being reconnected, an outcome the daemon could not be told); default
// slog.Default().
func WithLogger(logger *slog.Logger) Option { return func(s *settings) { s.logger = logger } }

func newSettings(options []Option) (*settings, error) {
	s := &settings{maxMessageBytes: DefaultMaxMessageBytes, reconnect: DefaultReconnect}
	for _, option := range options {
		option(s)
	}
	if s.tokenFile != "" {
		if s.token != "" {
			return nil, fmt.Errorf("dukat: give WithToken or WithTokenFile, not both")
		}
		text, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("dukat: token file: %w", err)
		}
		if s.token = strings.TrimSpace(string(text)); s.token == "" {
			return nil, fmt.Errorf("dukat: token file %s is empty", s.tokenFile)
		}
	}
	if strings.ContainsAny(s.token, "\r\n") {
		return nil, fmt.Errorf("dukat: a token is a single line")
	}
	if s.maxMessageBytes < 1024 {
		return nil, fmt.Errorf("dukat: max message bytes must be at least 1024, not %d", s.maxMessageBytes)
	}
	if err := s.reconnect.validate(); err != nil {
		return nil, err
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	return s, nil
}
