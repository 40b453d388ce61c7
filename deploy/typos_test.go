package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testTyposAreCaught runs the checks on copies of the files with one
// mistake each, so a check that silently stopped working shows up.
func testTyposAreCaught(t *testing.T, cli *cli, dir, repo string) {
	// typoCases are mistakes the checks must catch, each made in a copy of the
	// files: from is replaced (first occurrence) by to, and some problem must
	// mention want.
	typoCases := []struct {
		name, file, from, to, want string
	}{
		{"unknown flag", "compose.yaml", "- --insecure\n", "- --insecur\n", "no flag --insecur"},
		{"port not listened on", "compose.yaml", "--http-listen=0.0.0.0:7080", "--http-listen=0.0.0.0:7008", `ports "127.0.0.1:7080:7080"`},
		{"healthcheck port", "compose.yaml", "-addr=127.0.0.1:7071", "-addr=127.0.0.1:7017", "healthcheck probes 127.0.0.1:7017"},
		{"coordinator host", "compose.yaml", "--coordinator=coordinator:7070", "--coordinator=coordinatr:7070", "registers with coordinatr:7070"},
		{"stop grace", "compose.yaml", "stop_grace_period: 50s", "stop_grace_period: 10s", "stop_grace_period"},
		{"tokens env", "compose.yaml", "TASKER_TOKEN=${TASKER_EXECUTOR_TOKEN", "TASKER_TOKEN=${TASKER_ADMIN_TOKEN", "TASKER_TOKEN is not an access: executor token"},
		{"containerPort", "kubernetes/executor.yaml", "containerPort: 7081", "containerPort: 7018", "containerPort 7018"},
		{"misspelt field", "kubernetes/executor.yaml", "readinessProbe:", "readinesProbe:", `unknown field "readinesProbe"`},
		{"coordinator replica", "kubernetes/executor.yaml", "tasker-coordinator-1.", "tasker-coordinator-2.", "no pod of StatefulSet"},
		{"env reference", "kubernetes/coordinator.yaml", "$(TASKER_DB)", "$(TASKER_DBX)", "$(TASKER_DBX), which the container's env does not define"},
		{"grpc probe port", "kubernetes/coordinator.yaml", "port: 7070\n", "port: 7007\n", "gRPC port 7007"},
		{"http probe port name", "kubernetes/coordinator.yaml", "port: http\n", "port: htp\n", "HTTP port htp"},
		{"service target", "kubernetes/coordinator.yaml", "targetPort: http", "targetPort: metrics", "targetPort metrics"},
		{"grace period", "kubernetes/coordinator.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds"},
		{"tokens file", "kubernetes/configmap.yaml", "access: executor", "access: executr", "--tokens-file from ConfigMap"},
		{"secret key", "kubernetes/coordinator.yaml", "key: postgres-url", "key: postgres-uri", "no key postgres-uri"},
		{"entrypoint", "Dockerfile", `ENTRYPOINT ["/tasker"]`, `ENTRYPOINT ["/taskr"]`, "ENTRYPOINT"},
		{"build path", "Dockerfile", "./cmd/tasker\n", "./cmd/taskr\n", "no main package"},
		{"expose", "Dockerfile", "EXPOSE 7070 7071", "EXPOSE 7007 7071", "EXPOSE 7007"},
		{"copy source", "Dockerfile", "COPY --from=build /out/tasker /tasker", "COPY --from=build /out/taskr /tasker", "no go build in that stage writes it"},
		{"instruction", "Dockerfile", "WORKDIR /var/lib/tasker", "WORKDIRR /var/lib/tasker", `unknown instruction "WORKDIRR"`},
		{"unit flag", "systemd/tasker-coordinator.service", "--shutdown-timeout=30s", "--shutdown-timout=30s", "no flag --shutdown-timout"},
		{"unit stop timeout", "systemd/tasker-coordinator.service", "TimeoutStopSec=45s", "TimeoutStopSec=30s", "TimeoutStopSec=30s"},
		{"unit coordinator port", "systemd/tasker-executor.service", "TASKER_COORDINATOR=%H:7070", "TASKER_COORDINATOR=%H:7007", "registers with"},
		{"unit subcommand", "systemd/tasker-executor.service", "tasker executor \\", "tasker executer \\", `no subcommand "executer"`},
		{"unit credential", "systemd/tasker-coordinator.service", "LoadCredential=tokens.yaml:", "LoadCredential=token.yaml:", "no LoadCredential=tokens.yaml"},
	}
	base := copyDeployFiles(t, dir)
	_, list := checkAll(cli, base, repo)
	require.Empty(t, list, "the unchanged copy must pass, or the cases below prove nothing")
	for _, tc := range typoCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			copyDir := copyDeployFiles(t, dir)
			file := filepath.Join(copyDir, filepath.FromSlash(tc.file))
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			require.Contains(t, string(data), tc.from, "the case no longer matches %s", tc.file)
			broken := strings.Replace(string(data), tc.from, tc.to, 1)
			require.NoError(t, os.WriteFile(file, []byte(broken), 0o644))
			_, list := checkAll(cli, copyDir, repo)
			require.NotEmpty(t, list, "%s: %q → %q went unnoticed", tc.file, tc.from, tc.to)
			found := false
			for _, p := range list {
				found = found || strings.Contains(p, tc.want)
			}
			require.True(t, found, "%s: %q → %q: no problem mentions %q; got:\n%s", tc.file, tc.from, tc.to, tc.want, strings.Join(list, "\n"))
		})
	}
}

// copyDeployFiles copies the deployment files into TMP/deploy (so the
// compose file's build context, .., still holds deploy/Dockerfile) and
// returns that directory.
func copyDeployFiles(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "deploy")
	for _, pattern := range []string{"Dockerfile", "Dockerfile.dockerignore", "compose.yaml", "kubernetes/*.yaml", "systemd/*.service"} {
		files, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(pattern)))
		require.NoError(t, err)
		require.NotEmpty(t, files, pattern)
		for _, f := range files {
			rel, err := filepath.Rel(dir, f)
			require.NoError(t, err)
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			dest := filepath.Join(out, rel)
			require.NoError(t, os.MkdirAll(filepath.Dir(dest), 0o755))
			require.NoError(t, os.WriteFile(dest, data, 0o644))
		}
	}
	return out
}
