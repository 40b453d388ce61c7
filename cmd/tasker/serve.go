package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/auth"
)

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

// positiveInt refuses a zero or negative count or size flag; the libraries
// read zero as "the default", which is not what someone who typed 0 meant.
func positiveInt(flag string, n int) error {
	if n <= 0 {
		return fmt.Errorf("%s: want a positive number, got %d", flag, n)
	}
	return nil
}
