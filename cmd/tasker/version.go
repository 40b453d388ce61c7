package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionInfo is what a binary knows about its own build.
type versionInfo struct {
	// module is the main module's path and version ("(devel)" for a build
	// from a checkout that Go could not stamp with a version).
	module, version string
	// revision, time and modified come from the VCS stamp Go adds when it
	// builds inside a checkout; empty when it did not (go run, go test,
	// -buildvcs=false).
	revision, time string
	modified       bool
	goVersion      string
}

// readBuildInfo wraps debug.ReadBuildInfo; nil when the binary has none.
func readBuildInfo() *debug.BuildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return info
}

// buildVersion extracts versionInfo from the build information.
func buildVersion(info *debug.BuildInfo) versionInfo {
	v := versionInfo{module: "github.com/tasker-go/tasker", version: "(devel)"}
	if info == nil {
		return v
	}
	v.goVersion = info.GoVersion
	if info.Main.Path != "" {
		v.module = info.Main.Path
	}
	if info.Main.Version != "" {
		v.version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.revision = s.Value
		case "vcs.time":
			v.time = s.Value
		case "vcs.modified":
			v.modified = s.Value == "true"
		}
	}
	return v
}

// short is the one-line form --version prints: the version, and the
// revision when the version does not already carry it.
func (v versionInfo) short() string {
	s := v.version
	if v.revision != "" && !strings.Contains(v.version, shortRevision(v.revision)) {
		s += " " + shortRevision(v.revision)
		if v.modified {
			s += "+dirty"
		}
	}
	return s
}

func shortRevision(r string) string { return r[:min(len(r), 12)] }

// String is the full form "tasker version" prints, one field per line.
func (v versionInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tasker %s\n", v.version)
	fmt.Fprintf(&b, "module:   %s\n", v.module)
	if v.revision != "" {
		rev := v.revision
		if v.modified {
			rev += " (modified)"
		}
		fmt.Fprintf(&b, "revision: %s\n", rev)
	}
	if v.time != "" {
		fmt.Fprintf(&b, "time:     %s\n", v.time)
	}
	if v.goVersion != "" {
		fmt.Fprintf(&b, "go:       %s\n", v.goVersion)
	}
	return b.String()
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and VCS revision this binary was built from",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(g.env.Stdout, buildVersion(readBuildInfo()))
			return err
		},
	}
}
