// Package auth holds the security pieces shared by the coordinator, the
// executor SDK and the CLI: bearer tokens (a static tokens file and JWTs),
// the principal a verified token stands for, gRPC server interceptors that
// authenticate callers and authorize each method by access class, client
// credentials that attach a token to every call, and helpers that build
// tls.Config values from PEM files.
//
// Access classes: read, write (implies read) and executor (only the calls an
// executor makes to the coordinator). Namespaces are granted per principal;
// "*" grants all of them.
//
// Nothing here is global: each server builds its own Guard from a
// GuardConfig, and tokens, keys and certificates are loaded from the files
// named on the command line.
package auth
