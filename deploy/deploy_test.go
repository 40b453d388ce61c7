package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/executor"
)

// coordinatorDrain is how long the coordinator, after --shutdown-timeout,
// still waits for its gRPC server to stop gracefully (runningCoordinator.stop
// in cmd/tasker/serve.go). A stop grace period must cover both.
const coordinatorDrain = 5 * time.Second

// executorStopTime is how long an executor may take to stop on SIGTERM: its
// handlers' shutdown timeout, then the delivery of their results.
const executorStopTime = executor.DefaultShutdownTimeout + executor.DefaultDeliveryTimeout

// staticBuildEnv, set to 1, makes TestDeploy run the Dockerfile's own
// static builds. They compile every package again with the image's flags
// (-trimpath, netgo, a static cgo link of SQLite): minutes on a fresh build
// cache, past go test's default timeout on a loaded two-core machine. So by
// default TestDeploy builds the same packages the way the rest of the test
// run does, sharing its build cache, and CI (.ci/run) sets the variable.
const staticBuildEnv = "TASKER_TEST_STATIC_BUILD"

// TestDeploy builds tasker (as deploy/Dockerfile does, with
// TASKER_TEST_STATIC_BUILD=1), then checks every deployment file against
// that binary's own --help and runs the binary as the files do.
func TestDeploy(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(".")
	require.NoError(t, err)
	repo := filepath.Dir(dir)

	// The builds come from the Dockerfile's own RUN lines, so they are
	// checked by running them; every other check reads files only.
	var pre problems
	df := readDockerfile(filepath.Join(dir, "Dockerfile"), repo, &pre)
	require.Empty(t, pre.list, "deploy/Dockerfile")
	static := os.Getenv(staticBuildEnv) == "1"
	var bins map[string]string
	if static {
		bins = runBuilds(t, repo, df.builds)
	} else {
		bins = testBuilds(t, repo, df.builds)
	}
	t.Run("static build", func(t *testing.T) {
		if !static {
			t.Skipf("the Dockerfile's own static builds were not run (their flags were checked as text); "+
				"run them with %s=1 go test ./deploy/ (CI does; minutes on a fresh build cache)", staticBuildEnv)
		}
	})
	taskerBin := bins[df.taskerOut]
	require.NotEmpty(t, taskerBin, "the Dockerfile builds no ./cmd/tasker")
	cli := loadCLI(t, taskerBin)

	facts, list := checkAll(cli, dir, repo)

	t.Run("files", func(t *testing.T) {
		t.Parallel()
		for _, p := range list {
			t.Error(p)
		}
	})
	t.Run("typos", func(t *testing.T) {
		t.Parallel()
		testTyposAreCaught(t, cli, dir, repo)
	})
	t.Run("systemd-analyze", func(t *testing.T) {
		t.Parallel()
		verifyUnits(t, dir, taskerBin)
	})
	t.Run("kustomize", func(t *testing.T) {
		t.Parallel()
		buildKustomization(t, dir)
	})
	t.Run("live", func(t *testing.T) {
		t.Parallel()
		testLive(t, liveBins{tasker: taskerBin, probe: bins[df.probeOut]}, facts)
	})
}

// facts are what the checks learned from the files that the live test
// exercises against the running binary.
type facts struct {
	// httpPaths are the paths probes and healthchecks GET.
	httpPaths []string
	// compose holds the compose file's coordinator and executor, run for
	// real by the live test.
	compose composeFacts
	// k8sCoordinator is the Kubernetes coordinator's invocation and its
	// tokens file (from the ConfigMap).
	k8sCoordinator *invocation
	k8sTokens      string
	// systemd holds the units' command lines, run with TLS.
	systemd systemdFacts
}

// checkAll checks every file under dir and returns what it found wrong,
// one line each naming the file.
func checkAll(cli *cli, dir, repo string) (facts, []string) {
	p := &problems{}
	df := readDockerfile(filepath.Join(dir, "Dockerfile"), repo, p)
	checkDockerignore(filepath.Join(dir, "Dockerfile.dockerignore"), df, p)
	cf := checkCompose(cli, filepath.Join(dir, "compose.yaml"), df, p)
	kf := checkKubernetes(cli, filepath.Join(dir, "kubernetes"), p)
	sf := checkSystemd(cli, filepath.Join(dir, "systemd"), p)

	// The image must declare what its users listen on, and only that.
	used := map[int]bool{}
	for port := range cf.listenPorts {
		used[port] = true
	}
	for port := range kf.listenPorts {
		used[port] = true
	}
	for _, port := range df.expose {
		if !used[port] {
			p.add("Dockerfile", "EXPOSE %d: no container in compose.yaml or kubernetes/ listens on it", port)
		}
	}
	for port := range used {
		if !slices.Contains(df.expose, port) {
			p.add("Dockerfile", "containers listen on %d but EXPOSE does not list it", port)
		}
	}
	checkNoStrayFiles(dir, p)

	paths := append(cf.httpPaths, kf.httpPaths...)
	slices.Sort(paths)
	return facts{httpPaths: slices.Compact(paths), compose: cf, k8sCoordinator: kf.coordinator, k8sTokens: kf.tokens, systemd: sf}, p.list
}

// checkNoStrayFiles makes a new deployment file fail until this test learns
// to check it.
func checkNoStrayFiles(dir string, p *problems) {
	known := []string{
		"Dockerfile", "Dockerfile.dockerignore", "compose.yaml", "README.md", "doc.go", "healthprobe/*.go",
		"kubernetes/*.yaml", "systemd/*.service", "*_test.go",
	}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, pattern := range known {
			if ok, _ := filepath.Match(pattern, rel); ok {
				return nil
			}
		}
		p.add(rel, "deploy_test.go does not check this file; teach it to")
		return nil
	})
}

// problems collects what is wrong instead of failing at once, so one run
// lists every mistake and the typo test can run the checks on broken copies.
type problems struct{ list []string }

func (p *problems) add(where, format string, args ...any) {
	p.list = append(p.list, where+": "+fmt.Sprintf(format, args...))
}

// runBuilds runs the Dockerfile's go build commands on this machine, with
// each -o pointed into a temporary directory, and checks the outputs are
// statically linked (the final stage has no libc). It returns the local
// path of each output by its path in the image build.
func runBuilds(t *testing.T, repo string, builds []goBuild) map[string]string {
	t.Helper()
	tmp := t.TempDir()
	out := map[string]string{}
	for _, b := range builds {
		local := filepath.Join(tmp, filepath.Base(b.out))
		args := slices.Clone(b.args)
		args[b.outIndex] = local
		cmd := exec.Command("go", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), b.env...)
		output, err := cmd.CombinedOutput()
		require.NoError(t, err, "Dockerfile: go %s\n%s", strings.Join(b.args, " "), output)
		require.NoError(t, staticELF(local), "Dockerfile: %s", b.out)
		out[b.out] = local
	}
	return out
}

// testBuilds builds the packages the Dockerfile builds, as the test run
// builds its own (with -race when it has it), so the compiled packages come
// from the run's build cache; it returns the local path of each output by
// its path in the image build.
func testBuilds(t *testing.T, repo string, builds []goBuild) map[string]string {
	t.Helper()
	tmp := t.TempDir()
	out := map[string]string{}
	for _, b := range builds {
		local := filepath.Join(tmp, filepath.Base(b.out))
		args := []string{"build", "-o", local}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = repo
		output, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s\n%s", strings.Join(cmd.Args[1:], " "), output)
		out[b.out] = local
	}
	return out
}

// cli is what `tasker --help` and its server subcommands' --help say.
type cli struct {
	commands map[string]bool
	// flags are per subcommand ("" is the root); global flags are in
	// every subcommand's set too.
	flags  map[string]map[string]flagSpec
	global map[string]flagSpec
}

type flagSpec struct {
	isBool bool
	def    string
}

var (
	helpFlagLine    = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z]+))?\s{2,}(.*)$`)
	helpCommandLine = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s+\S`)
	helpDefault     = regexp.MustCompile(`\(default (.+)\)$`)
)

func loadCLI(t *testing.T, bin string) *cli {
	t.Helper()
	help := func(args ...string) string {
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "tasker %s\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	c := &cli{commands: map[string]bool{}, flags: map[string]map[string]flagSpec{}}
	rootCommands, rootFlags, _ := parseHelp(help("--help"))
	c.commands = rootCommands
	c.global = rootFlags
	c.flags[""] = rootFlags
	for _, sub := range []string{"coordinator", "executor"} {
		require.True(t, c.commands[sub], "tasker --help lists no %q subcommand", sub)
		_, local, global := parseHelp(help(sub, "--help"))
		require.NotEmpty(t, local, "tasker %s --help lists no flags", sub)
		for name, spec := range global {
			local[name] = spec
		}
		c.flags[sub] = local
	}
	require.Contains(t, c.flags["coordinator"], "listen")
	require.Contains(t, c.flags["executor"], "listen")
	return c
}

// parseHelp reads cobra's help text: the subcommands, the command's own
// flags and the global ones.
func parseHelp(text string) (commands map[string]bool, local, global map[string]flagSpec) {
	commands, local, global = map[string]bool{}, map[string]flagSpec{}, map[string]flagSpec{}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			section = line
			continue
		}
		switch section {
		case "Available Commands:":
			if m := helpCommandLine.FindStringSubmatch(line); m != nil {
				commands[m[1]] = true
			}
		case "Flags:", "Global Flags:":
			m := helpFlagLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			spec := flagSpec{isBool: m[2] == ""}
			if d := helpDefault.FindStringSubmatch(m[3]); d != nil {
				spec.def = d[1]
				if s, err := strconv.Unquote(d[1]); err == nil {
					spec.def = s
				}
			}
			if section == "Flags:" {
				local[m[1]] = spec
			} else {
				global[m[1]] = spec
			}
		}
	}
	return commands, local, global
}

// invocation is one command line a deployment file gives tasker.
type invocation struct {
	where string
	sub   string
	args  []string
	set   map[string][]string
	cli   *cli
}

// parse reads args (the words after the tasker binary) as cobra would,
// reporting unknown subcommands and flags.
func (c *cli) parse(where string, args []string, p *problems) *invocation {
	inv := &invocation{where: where, args: args, set: map[string][]string{}, cli: c}
	rest := args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		inv.sub, rest = rest[0], rest[1:]
		if !c.commands[inv.sub] {
			p.add(where, "tasker has no subcommand %q", inv.sub)
			return nil
		}
	}
	flags, ok := c.flags[inv.sub]
	if !ok {
		p.add(where, "the test loads no --help for subcommand %q; add it to loadCLI", inv.sub)
		return nil
	}
	for i := 0; i < len(rest); i++ {
		word := rest[i]
		if word == "-h" || word == "--help" {
			inv.set["help"] = append(inv.set["help"], "true")
			continue
		}
		if !strings.HasPrefix(word, "--") {
			p.add(where, "tasker %s takes no argument %q", inv.sub, word)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(word, "--"), "=")
		spec, ok := flags[name]
		if !ok {
			p.add(where, "tasker %s has no flag --%s", inv.sub, name)
			continue
		}
		switch {
		case hasValue:
		case spec.isBool:
			value = "true"
		case i+1 < len(rest):
			i++
			value = rest[i]
		default:
			p.add(where, "--%s needs a value", name)
		}
		inv.set[name] = append(inv.set[name], value)
	}
	return inv
}

// get is the value a flag takes: the last one given, else its default.
func (inv *invocation) get(name string) string {
	if v := inv.set[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return inv.cli.flags[inv.sub][name].def
}

func (inv *invocation) has(name string) bool { return len(inv.set[name]) > 0 }

// withArgs is the command line with some flags' values replaced (an empty
// value drops the flag), for running a file's command on this machine.
func (inv *invocation) withArgs(replace map[string]string) []string {
	out := []string{inv.sub}
	seen := map[string]bool{}
	for i := 1; i < len(inv.args); i++ {
		word := inv.args[i]
		name, _, hasValue := strings.Cut(strings.TrimPrefix(word, "--"), "=")
		spec := inv.cli.flags[inv.sub][name]
		words := []string{word}
		if !hasValue && !spec.isBool && i+1 < len(inv.args) {
			i++
			words = append(words, inv.args[i])
		}
		if v, ok := replace[name]; ok {
			if v != "" && !seen[name] {
				out = append(out, "--"+name+"="+v)
			}
			seen[name] = true
			continue
		}
		out = append(out, words...)
	}
	for name, v := range replace {
		if !seen[name] && v != "" {
			out = append(out, "--"+name+"="+v)
		}
	}
	return out
}

// served is what a coordinator or executor invocation listens on.
type served struct {
	grpcPort, httpPort int
}

// checkServer checks a coordinator or executor command line as the binary
// would at start: addresses parse, plaintext off loopback needs --insecure,
// TLS files come in pairs.
func checkServer(inv *invocation, p *problems) served {
	var s served
	if inv.sub != "coordinator" && inv.sub != "executor" {
		p.add(inv.where, "runs tasker %s; want coordinator or executor", inv.sub)
		return s
	}
	host, port, err := splitHostPort(inv.get("listen"))
	if err != nil {
		p.add(inv.where, "--listen: %v", err)
	} else {
		s.grpcPort = port
		if inv.get("tls-cert") == "" && !isLoopback(host) && inv.get("insecure") != "true" {
			p.add(inv.where, "plaintext on %q without --insecure: tasker would refuse to start", inv.get("listen"))
		}
	}
	if (inv.get("tls-cert") == "") != (inv.get("tls-key") == "") {
		p.add(inv.where, "--tls-cert and --tls-key go together")
	}
	if addr := inv.get("http-listen"); addr != "" {
		if _, port, err := splitHostPort(addr); err != nil {
			p.add(inv.where, "--http-listen: %v", err)
		} else {
			s.httpPort = port
		}
	}
	if adv := inv.get("advertise"); adv != "" {
		if _, port, err := splitHostPort(adv); err != nil {
			p.add(inv.where, "--advertise: %v", err)
		} else if port != s.grpcPort {
			p.add(inv.where, "--advertise port %d is not the --listen port %d", port, s.grpcPort)
		}
	}
	return s
}

// coordinatorTargets are the coordinator addresses an executor registers
// with.
func coordinatorTargets(inv *invocation) []string {
	out := []string{inv.get("coordinator")}
	for _, v := range inv.set["coordinators"] {
		out = append(out, strings.Split(v, ",")...)
	}
	return out
}

// stopTime is how long the process may take to stop after SIGTERM.
func stopTime(inv *invocation, p *problems) time.Duration {
	if inv.sub == "executor" {
		return executorStopTime
	}
	d, err := time.ParseDuration(inv.get("shutdown-timeout"))
	if err != nil {
		p.add(inv.where, "--shutdown-timeout: %v", err)
	}
	return d + coordinatorDrain
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %q of %q is not a literal port number", port, addr)
	}
	return host, n, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// shellWords splits a command line as sh would for the quoting used in
// these files: single and double quotes and backslash escapes, no
// expansion.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`, s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
