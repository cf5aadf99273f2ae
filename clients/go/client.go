package dukat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"
)

// ClientIDKey is the metadata naming the client that makes a call, for the daemon's
// per-client limits (open Watch streams): one id per Dial, sent with every call, as the
// Python client does (dukat.client.CLIENT_ID_KEY).
const ClientIDKey = "dukat-client-id"

// Keepalive as the daemon enforces it (dukatd.server): it tolerates client pings no more
// often than every 10 s and ends a connection with GOAWAY too_many_pings on the third that
// comes too early, so the client pings every 30 s, as the Python client does; a ping not
// answered within 20 s drops the connection, which is how a worker or a watcher finds a
// daemon that vanished without closing.
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 20 * time.Second
)

// gRPC's own reconnect backoff starts at 1 s and grows to 120 s: after a daemon restart a
// connection would sit out minutes while the retries found it failing fast. Keep it short;
// Reconnect decides how long to keep trying.
var connectBackoff = grpcbackoff.Config{
	BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second,
}

// Client is a connection to one dukatd. Safe for concurrent use; Close it when done.
type Client struct {
	address   string
	conn      *grpc.ClientConn
	scheduler dukatv1.SchedulerServiceClient
	breakers  dukatv1.CircuitBreakerServiceClient
	daemon    dukatv1.DaemonServiceClient
	reconnect Reconnect
	logger    *slog.Logger
}

// Dial opens a client to the daemon at address: "unix:/path/to/dukatd.sock" or
// "host:port"; "" is $DUKAT_ADDRESS, else the daemon's own default (DefaultAddress). No call
// is made (ctx is checked, not kept): a daemon that is not there shows on the first call,
// as ErrUnavailable once the Reconnect policy gives up.
func Dial(ctx context.Context, address string, options ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := newSettings(options)
	if err != nil {
		return nil, err
	}
	grpcTarget, err := target(address)
	if err != nil {
		return nil, err
	}
	transport := insecure.NewCredentials()
	if s.tls != nil {
		transport = credentials.NewTLS(s.tls)
	}
	// Per-call metadata rather than call credentials: those need TLS, and the daemon's
	// default is a unix socket without it.
	pairs := []string{ClientIDKey, randomID()}
	if s.token != "" {
		pairs = append(pairs, "authorization", "Bearer "+s.token)
	}
	conn, err := grpc.NewClient(grpcTarget,
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(s.maxMessageBytes), grpc.MaxCallSendMsgSize(s.maxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: connectBackoff}),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, pairs...), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc,
			cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, pairs...), desc, cc, method, opts...)
		}),
	)
	if err != nil {
		return nil, err
	}
	return &Client{
		address:   address,
		conn:      conn,
		scheduler: dukatv1.NewSchedulerServiceClient(conn),
		breakers:  dukatv1.NewCircuitBreakerServiceClient(conn),
		daemon:    dukatv1.NewDaemonServiceClient(conn),
		reconnect: s.reconnect,
		logger:    s.logger,
	}, nil
}

// randomID is a fresh id: a Dial's client id, a Submit's request id.
func randomID() string {
	var id [16]byte
	rand.Read(id[:]) // never fails (crypto/rand)
	return hex.EncodeToString(id[:])
}

// Address is the address Dial was given.
func (c *Client) Address() string { return c.address }

// Close closes the connection; calls still running end with an error.
func (c *Client) Close() error { return c.conn.Close() }

// call makes a unary call; UNAVAILABLE is retried by the Reconnect policy when repeating
// the call is safe (idempotent).
func call[Req, Resp any](ctx context.Context, c *Client, idempotent bool,
	method func(context.Context, Req, ...grpc.CallOption) (Resp, error), request Req) (Resp, error) {
	retries := newBackoff(c.reconnect)
	for {
		response, err := method(ctx, request)
		if err == nil {
			return response, nil
		}
		if !idempotent {
			return response, callError(ctx, err)
		}
		if again, err := retries.retry(ctx, err); !again {
			return response, err
		}
	}
}
