package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/executor"
)

// envExecutorSecret holds the secret coordinators present to executors
// when --executor-secret is not given; unlike the flag, other users cannot
// read it from the process list.
const envExecutorSecret = "TASKER_EXECUTOR_SECRET"

// checkExecutorSecret refuses a guessable --executor-secret.
func checkExecutorSecret(secret string) error {
	if secret != "" && len(secret) < executor.MinSecretLength {
		return fmt.Errorf("--executor-secret: %d characters; use at least %d", len(secret), executor.MinSecretLength)
	}
	return nil
}

// serverGCPercent is the garbage collector's target for the long-running
// commands when GOGC is not set: at Go's default of 100, collection took
// about an eighth of the coordinator's CPU under load (tasker bench
// linear4 at concurrency 500: 0.089 CPU-seconds per 1,000 steps at 100,
// 0.077 at 200, 0.075 at 400), for a heap that stays small (about 17 MB
// more peak RSS at 200). GOMEMLIMIT still caps the heap when set.
const serverGCPercent = 200

// tuneGC sets the garbage collector's target for a server command unless
// the operator chose one with GOGC.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
}

// logFlags configure the structured logs of the server commands.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(cmd *cobra.Command, defaultLevel string) {
	cmd.Flags().StringVar(&l.format, "log-format", "text", "log format: text or json")
	cmd.Flags().StringVar(&l.level, "log-level", defaultLevel, "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, got %q", l.format)
	}
}

// storeFlags select and tune the store.
type storeFlags struct {
	db   string
	sync string
}

func (s *storeFlags) register(cmd *cobra.Command, defaultDB string) {
	cmd.Flags().StringVar(&s.db, "db", defaultDB, "store: a SQLite file path (or sqlite:PATH), or a postgres:// URL")
	cmd.Flags().StringVar(&s.sync, "sync", "full", "SQLite synchronous mode: full (durable against power loss) or normal")
}

// registerInsecure adds --insecure, and --allow-plaintext as a hidden alias,
// to a server command.
func registerInsecure(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "insecure", false, "allow serving plaintext gRPC (no --tls-cert) on a non-loopback address; anyone on the network can then read and forge traffic")
	cmd.Flags().BoolVar(v, "allow-plaintext", false, "same as --insecure")
	_ = cmd.Flags().MarkHidden("allow-plaintext")
}

// checkPlaintext refuses plaintext off loopback unless allowed.
func checkPlaintext(listen string, allowed bool) error {
	if allowed {
		return nil
	}
	if err := auth.CheckPlaintextListen(listen); err != nil {
		return fmt.Errorf("%w: give --tls-cert and --tls-key to serve TLS, or --insecure to serve plaintext anyway", err)
	}
	return nil
}

// checkHostPort refuses an address a listener cannot take, naming the flag
// and showing the form it wants. A bare port gets an example with that port;
// otherwise the example uses defaultPort.
func checkHostPort(flag, addr, defaultPort string) error {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err == nil {
			return nil
		}
	}
	example := defaultPort
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		example = addr
	}
	return fmt.Errorf("%s: want host:port (e.g. 127.0.0.1:%s), got %q", flag, example, addr)
}

// positiveDuration refuses a zero or negative duration flag.
func positiveDuration(flag string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s: want a positive duration, got %s", flag, d)
	}
	return nil
}

// nonNegativeDuration refuses a negative duration for a flag where zero
// means "off".
func nonNegativeDuration(flag string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s: want zero (off) or a positive duration, got %s", flag, d)
	}
	return nil
}

// positiveInt refuses a zero or negative count or size flag; the libraries
// read zero as "the default", which is not what someone who typed 0 meant.
func positiveInt(flag string, n int) error {
	if n <= 0 {
		return fmt.Errorf("%s: want a positive number, got %d", flag, n)
	}
	return nil
}

// loadAuthenticator loads --tokens-file and --jwt-key into one
// authenticator, nil when neither is given; mode describes it for the
// startup log.
func loadAuthenticator(tokensFile, jwtKey string) (auth.Authenticator, string, error) {
	var chain auth.Chain
	var modes []string
	if tokensFile != "" {
		t, err := auth.LoadTokens(tokensFile)
		if err != nil {
			return nil, "", fmt.Errorf("--tokens-file: %w", err)
		}
		chain, modes = append(chain, t), append(modes, fmt.Sprintf("tokens (%d)", t.Len()))
	}
	if jwtKey != "" {
		v, err := auth.LoadJWTKey(jwtKey)
		if err != nil {
			return nil, "", fmt.Errorf("--jwt-key: %w", err)
		}
		chain, modes = append(chain, v), append(modes, "jwt")
	}
	if len(chain) == 0 {
		return nil, "off", nil
	}
	return chain, strings.Join(modes, "+"), nil
}

// httpSecurity protects the HTTP listener beside a gRPC server by the same
// rules: TLS with the server's certificate when it has one, plaintext only
// on loopback unless --insecure, and the server's tokens on every path but
// /healthz.
type httpSecurity struct {
	// tls serves HTTPS; nil serves plaintext.
	tls *tls.Config
	// authn checks tokens; nil when tokens are off.
	authn          auth.Authenticator
	allowPlaintext bool
}

// check refuses an --http-listen address these settings may not serve on.
func (h httpSecurity) check(addr, defaultPort string) error {
	if err := checkHostPort("--http-listen", addr, defaultPort); err != nil {
		return err
	}
	if h.tls != nil || h.allowPlaintext {
		return nil
	}
	if err := auth.CheckPlaintextListen(addr); err != nil {
		if errors.Is(err, auth.ErrPlaintextNotLoopback) {
			return fmt.Errorf("--http-listen: refusing to serve plaintext HTTP on a non-loopback address %q: give --tls-cert and --tls-key to serve HTTPS, or --insecure to serve plaintext anyway", addr)
		}
		return fmt.Errorf("--http-listen: %w", err)
	}
	return nil
}

// listenTCP takes addr for the server that flag configures. An address
// already taken, most often by a tasker dev or coordinator left running,
// gets an error that says so and names the flag to move to another one;
// the bare "bind: address already in use" named neither.
func listenTCP(flag, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s: %s is already in use (is another tasker dev, coordinator or executor running there?): stop what holds it, or give %s another address: %w", flag, addr, flag, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", flag, addr, err)
	}
	return lis, nil
}
