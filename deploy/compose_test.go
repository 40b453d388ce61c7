package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/tasker-go/tasker/auth"
)

// The subset of the Compose file format the file uses. Decoding is strict,
// so a misspelt key fails; a new key needs a field here.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Configs  map[string]composeConfig  `json:"configs"`
	Volumes  map[string]*struct{}      `json:"volumes"`
}

type composeService struct {
	Image           string                       `json:"image"`
	Build           *composeBuild                `json:"build"`
	Command         []string                     `json:"command"`
	Environment     composeEnv                   `json:"environment"`
	Volumes         []string                     `json:"volumes"`
	Configs         []composeConfigRef           `json:"configs"`
	Ports           []string                     `json:"ports"`
	Expose          []string                     `json:"expose"`
	Healthcheck     *composeHealthcheck          `json:"healthcheck"`
	DependsOn       map[string]composeDependency `json:"depends_on"`
	StopGracePeriod string                       `json:"stop_grace_period"`
	ReadOnly        bool                         `json:"read_only"`
	CapDrop         []string                     `json:"cap_drop"`
	SecurityOpt     []string                     `json:"security_opt"`
	Restart         string                       `json:"restart"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

type composeConfigRef struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

type composeHealthcheck struct {
	Test        []string `json:"test"`
	Interval    string   `json:"interval"`
	Timeout     string   `json:"timeout"`
	Retries     int      `json:"retries"`
	StartPeriod string   `json:"start_period"`
}

type composeDependency struct {
	Condition string `json:"condition"`
}

type composeConfig struct {
	Content string `json:"content"`
	File    string `json:"file"`
}

// composeEnv takes both forms of environment: a map, or a list of KEY=VALUE
// and bare KEY (passed through from the shell, kept as "${KEY}").
type composeEnv map[string]string

func (e *composeEnv) UnmarshalJSON(data []byte) error {
	m := map[string]string{}
	if err := json.Unmarshal(data, &m); err == nil {
		*e = m
		return nil
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("environment: want a map or a list of KEY=VALUE: %w", err)
	}
	for _, item := range list {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			v = "${" + k + "}"
		}
		m[k] = v
	}
	*e = m
	return nil
}

// composeFacts is what the live test runs from the compose file.
type composeFacts struct {
	listenPorts map[int]bool
	httpPaths   []string
	// coordinator and executor are the tasker services' command lines.
	coordinator, executor *invocation
	// tokens is the coordinator's tokens file, interpolated with testValue;
	// executorToken and apiToken are tokens from it as the services and an
	// operator would send them.
	tokens, executorToken, apiToken string
}

var (
	composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	secretName = regexp.MustCompile(`TOKEN|PASSWORD|SECRET`)
)

// testValue is what the checks substitute for ${NAME}: long enough for a
// token.
func testValue(name string) string { return "test-" + strings.ToLower(name) + "-0123456789" }

// interpolate substitutes variables as compose would with every one set to
// testValue, and reports secrets that would silently be empty when unset.
func interpolate(where, s string, p *problems) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := composeVar.FindStringSubmatch(m)
		name, op := sub[1]+sub[4], sub[2]
		if secretName.MatchString(name) && op != ":?" && op != "?" {
			p.add(where, "${%s} must be written ${%s:?message} so compose refuses to start without it", name, name)
		}
		return testValue(name)
	})
}

func checkCompose(cli *cli, file string, df dockerfile, p *problems) composeFacts {
	f := composeFacts{listenPorts: map[int]bool{}}
	const where = "compose.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		p.add(where, "%v", err)
		return f
	}
	var doc composeFile
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		p.add(where, "%v", err)
		return f
	}
	type taskerService struct {
		name string
		inv  *invocation
		srv  served
		env  map[string]string
	}
	var tasker []taskerService
	names := sortedKeys(doc.Services)
	for _, name := range names {
		svc := doc.Services[name]
		at := where + " service " + name
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = interpolate(at, v, p)
		}
		checkDependencies(at, svc, doc, p)
		if svc.Build == nil && !strings.HasPrefix(svc.Image, "tasker") {
			if svc.Healthcheck == nil {
				p.add(at, "no healthcheck, so nothing can wait for it to be ready")
			}
			continue
		}
		if svc.Build != nil {
			checkSameFile(at, filepath.Join(filepath.Dir(file), svc.Build.Context, svc.Build.Dockerfile), filepath.Join(filepath.Dir(file), "Dockerfile"), p)
		}
		cmd := make([]string, len(svc.Command))
		for i, w := range svc.Command {
			cmd[i] = interpolate(at, w, p)
		}
		inv := cli.parse(at, cmd, p)
		if inv == nil {
			continue
		}
		srv := checkServer(inv, p)
		f.listenPorts[srv.grpcPort] = true
		if srv.httpPort != 0 {
			f.listenPorts[srv.httpPort] = true
		}
		checkComposePorts(at, svc, inv, srv, p)
		checkComposeHealthcheck(at, svc, srv, df, p)
		checkComposeGrace(at, svc, inv, p)
		if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
			p.add(at, "want read_only: true, cap_drop: [ALL] and security_opt: [no-new-privileges:true]")
		}
		tasker = append(tasker, taskerService{name: name, inv: inv, srv: srv, env: env})
	}

	grpcPort := map[string]int{}
	for _, s := range tasker {
		if s.inv.sub == "coordinator" {
			grpcPort[s.name] = s.srv.grpcPort
		}
	}
	for _, s := range tasker {
		at := where + " service " + s.name
		switch s.inv.sub {
		case "coordinator":
			f.coordinator = s.inv
			checkComposeDB(at, s.inv, s.env, doc, p)
			f.tokens = composeTokensFile(at, s.inv, doc.Services[s.name], doc, p)
		case "executor":
			f.executor = s.inv
			for _, target := range coordinatorTargets(s.inv) {
				host, port, err := splitHostPort(target)
				if err != nil {
					p.add(at, "coordinator address: %v", err)
				} else if grpcPort[host] == 0 || grpcPort[host] != port {
					p.add(at, "registers with %s, which is no coordinator service's gRPC port", target)
				}
			}
			if host, _, err := splitHostPort(s.inv.get("advertise")); err != nil || host != s.name {
				p.add(at, "--advertise %q: want this service's own name, which the coordinator resolves", s.inv.get("advertise"))
			}
			f.executorToken = s.env["TASKER_TOKEN"]
		}
	}
	if f.coordinator == nil || f.executor == nil {
		p.add(where, "want a coordinator and an executor service")
		return f
	}
	checkComposeTokens(where, &f, p)
	return f
}

func checkDependencies(at string, svc composeService, doc composeFile, p *problems) {
	for dep, d := range svc.DependsOn {
		target, ok := doc.Services[dep]
		switch {
		case !ok:
			p.add(at, "depends_on %s: no such service", dep)
		case d.Condition == "service_healthy" && target.Healthcheck == nil:
			p.add(at, "depends_on %s being healthy, but it has no healthcheck", dep)
		case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition):
			p.add(at, "depends_on %s: unknown condition %q", dep, d.Condition)
		}
	}
	for _, c := range svc.Configs {
		if _, ok := doc.Configs[c.Source]; !ok {
			p.add(at, "config %s: not defined under configs", c.Source)
		}
	}
}

func checkSameFile(at, got, want string, p *problems) {
	a, err := os.Stat(got)
	if err != nil {
		p.add(at, "build: %v", err)
		return
	}
	b, err := os.Stat(want)
	if err != nil || !os.SameFile(a, b) {
		p.add(at, "build: %s is not deploy/Dockerfile", got)
	}
}

// checkComposePorts wants published and exposed ports to be ones tasker
// listens on, and plaintext ones published on loopback only.
func checkComposePorts(at string, svc composeService, inv *invocation, srv served, p *problems) {
	listens := func(port string) bool {
		n, err := strconv.Atoi(strings.TrimSuffix(port, "/tcp"))
		return err == nil && (n == srv.grpcPort || n == srv.httpPort)
	}
	for _, spec := range svc.Ports {
		parts := strings.Split(spec, ":")
		if !listens(parts[len(parts)-1]) {
			p.add(at, "ports %q: the container listens on %d (gRPC) and %d (HTTP)", spec, srv.grpcPort, srv.httpPort)
		}
		if inv.get("insecure") == "true" && (len(parts) != 3 || !isLoopback(parts[0])) {
			p.add(at, "ports %q publishes plaintext gRPC beyond this host; bind it to 127.0.0.1", spec)
		}
	}
	for _, port := range svc.Expose {
		if !listens(port) {
			p.add(at, "expose %q: the container listens on %d (gRPC) and %d (HTTP)", port, srv.grpcPort, srv.httpPort)
		}
	}
}

// checkComposeHealthcheck wants the probe shipped in the image, pointed at
// the service's gRPC port.
func checkComposeHealthcheck(at string, svc composeService, srv served, df dockerfile, p *problems) {
	hc := svc.Healthcheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		p.add(at, "want a healthcheck in exec form: [CMD, /tasker-healthprobe, -addr=127.0.0.1:PORT]")
		return
	}
	if df.binaries[hc.Test[1]] != "./deploy/healthprobe" {
		p.add(at, "healthcheck runs %s, which the image does not have (distroless: no shell, no curl)", hc.Test[1])
		return
	}
	addr := "127.0.0.1:7070" // the probe's default
	for _, a := range hc.Test[2:] {
		if v, ok := strings.CutPrefix(a, "-addr="); ok {
			addr = v
		}
	}
	if _, port, err := splitHostPort(addr); err != nil || port != srv.grpcPort {
		p.add(at, "healthcheck probes %s, not the service's gRPC port %d", addr, srv.grpcPort)
	}
	for _, d := range []string{hc.Interval, hc.Timeout, hc.StartPeriod} {
		if _, err := time.ParseDuration(d); d != "" && err != nil {
			p.add(at, "healthcheck: %v", err)
		}
	}
}

func checkComposeGrace(at string, svc composeService, inv *invocation, p *problems) {
	need := stopTime(inv, p)
	grace, err := time.ParseDuration(svc.StopGracePeriod)
	if err != nil || grace <= need {
		p.add(at, "stop_grace_period %q: want more than %s, or SIGKILL cuts the shutdown short", svc.StopGracePeriod, need)
	}
}

// checkComposeDB wants --db to name the compose PostgreSQL, its user and
// database.
func checkComposeDB(at string, inv *invocation, env map[string]string, doc composeFile, p *problems) {
	u, err := url.Parse(inv.get("db"))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		p.add(at, "--db %q: want a postgres:// URL", inv.get("db"))
		return
	}
	pg, ok := doc.Services[u.Hostname()]
	if !ok || !strings.HasPrefix(pg.Image, "postgres:") {
		p.add(at, "--db host %q is not the postgres service", u.Hostname())
		return
	}
	if _, pass := u.User.Password(); pass || env["PGPASSWORD"] == "" {
		p.add(at, "--db: keep the password out of the URL (it shows in the process list); give PGPASSWORD")
	}
	if u.User.Username() != pg.Environment["POSTGRES_USER"] || strings.TrimPrefix(u.Path, "/") != pg.Environment["POSTGRES_DB"] {
		p.add(at, "--db user/database %s%s do not match the postgres service's POSTGRES_USER/POSTGRES_DB", u.User.Username(), u.Path)
	}
	if env["PGPASSWORD"] != interpolate(at, pg.Environment["POSTGRES_PASSWORD"], p) {
		p.add(at, "PGPASSWORD is not the postgres service's POSTGRES_PASSWORD")
	}
}

// composeTokensFile returns the content of the config mounted at
// --tokens-file, interpolated.
func composeTokensFile(at string, inv *invocation, svc composeService, doc composeFile, p *problems) string {
	path := inv.get("tokens-file")
	if path == "" {
		p.add(at, "no --tokens-file: every caller could call every RPC")
		return ""
	}
	for _, c := range svc.Configs {
		if c.Target == path {
			return interpolate(at+" config "+c.Source, doc.Configs[c.Source].Content, p)
		}
	}
	p.add(at, "--tokens-file %s: no config is mounted there", path)
	return ""
}

// checkComposeTokens wants the tokens file to load and the executor's
// TASKER_TOKEN to be one of its executor tokens.
func checkComposeTokens(where string, f *composeFacts, p *problems) {
	if f.tokens == "" {
		return
	}
	tokens, err := auth.ParseTokens([]byte(f.tokens))
	if err != nil {
		p.add(where, "tokens config: %v", err)
		return
	}
	if pr, err := tokens.Authenticate(context.Background(), f.executorToken); err != nil || pr.Access != auth.AccessExecutor {
		p.add(where, "the executor's TASKER_TOKEN is not an access: executor token of the tokens config")
	}
	var entries []auth.TokenEntry
	if err := yaml.Unmarshal([]byte(f.tokens), &entries); err != nil {
		p.add(where, "tokens config: %v", err)
		return
	}
	for _, e := range entries {
		if e.Access == "write" && e.Token != "" {
			f.apiToken = e.Token
		}
	}
	if f.apiToken == "" {
		p.add(where, "tokens config: no write token for operators")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
