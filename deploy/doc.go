// Package deploy holds Tasker's deployment files: the container image
// (Dockerfile), a Compose file, Kubernetes manifests and systemd units.
//
// It has no Go API. Its test builds the tasker binary the way the Dockerfile
// does and checks every file here against it (flags, subcommands, ports,
// paths, probes, shutdown grace periods), so a renamed flag or a mistyped
// port fails `go test ./deploy/` instead of a deployment.
package deploy
