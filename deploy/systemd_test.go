package deploy

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// unit is a parsed systemd unit file: section → key → values in order.
type unit struct {
	where    string
	sections map[string]map[string][]string
}

func readUnit(file string, p *problems) *unit {
	u := &unit{where: "systemd/" + filepath.Base(file), sections: map[string]map[string][]string{}}
	data, err := os.ReadFile(file)
	if err != nil {
		p.add(u.where, "%v", err)
		return nil
	}
	section := ""
	var cont strings.Builder
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if cont.Len() == 0 && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(line, "[]")
			if u.sections[section] == nil {
				u.sections[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			p.add(u.where, "line %d: %q is no key=value in a section", i+1, line)
			continue
		}
		key = strings.TrimSpace(key)
		u.sections[section][key] = append(u.sections[section][key], strings.TrimSpace(value))
	}
	return u
}

func (u *unit) get(section, key string) string {
	v := u.sections[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// environment is what Environment= lines set (EnvironmentFile= may
// override them at run time; these are the defaults).
func (u *unit) environment(p *problems) map[string]string {
	env := map[string]string{}
	for _, line := range u.sections["Service"]["Environment"] {
		words, err := shellWords(line)
		if err != nil {
			p.add(u.where, "Environment=%s: %v", line, err)
		}
		for _, w := range words {
			k, v, _ := strings.Cut(w, "=")
			env[k] = v
		}
	}
	return env
}

var unitVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// systemdUnit is what checkSystemd learns of one unit for the cross-unit
// checks.
type systemdUnit struct {
	u   *unit
	inv *invocation
	srv served
	env map[string]string
}

// systemdFacts are the units' command lines and environment defaults, run
// by the live test.
type systemdFacts struct {
	coordinator, executor *invocation
}

func checkSystemd(cli *cli, dir string, p *problems) systemdFacts {
	var f systemdFacts
	files, _ := filepath.Glob(filepath.Join(dir, "*.service"))
	if len(files) == 0 {
		p.add("systemd", "no units in %s", dir)
	}
	var units []systemdUnit
	for _, file := range files {
		u := readUnit(file, p)
		if u == nil {
			continue
		}
		if su, ok := checkUnit(cli, u, p); ok {
			units = append(units, su)
		}
	}
	grpcPorts := map[int]bool{}
	for _, su := range units {
		if su.inv.sub == "coordinator" {
			grpcPorts[su.srv.grpcPort] = true
			f.coordinator = su.inv
		}
	}
	for _, su := range units {
		if su.inv.sub != "executor" {
			continue
		}
		f.executor = su.inv
		target := su.inv.get("coordinator")
		if !su.inv.has("coordinator") && su.env["TASKER_COORDINATOR"] != "" {
			target = su.env["TASKER_COORDINATOR"] // tasker reads it for the default
		}
		if _, port, err := splitHostPort(target); err != nil || !grpcPorts[port] {
			p.add(su.u.where, "registers with %q, not on the coordinator unit's gRPC port", target)
		}
	}
	return f
}

func checkUnit(cli *cli, u *unit, p *problems) (systemdUnit, bool) {
	su := systemdUnit{u: u, env: u.environment(p)}
	for _, want := range []struct{ section, key string }{{"Unit", "Description"}, {"Install", "WantedBy"}} {
		if u.get(want.section, want.key) == "" {
			p.add(u.where, "no %s= in [%s]", want.key, want.section)
		}
	}
	exec := u.sections["Service"]["ExecStart"]
	if len(exec) != 1 {
		p.add(u.where, "want one ExecStart=, got %d", len(exec))
		return su, false
	}
	line := unitVar.ReplaceAllStringFunc(exec[0], func(m string) string {
		sub := unitVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		v, ok := su.env[name]
		if !ok {
			p.add(u.where, "ExecStart uses $%s, which no Environment= line gives a default", name)
		}
		return v
	})
	words, err := shellWords(strings.TrimLeft(line, "-@+!:"))
	if err != nil || len(words) < 2 {
		p.add(u.where, "ExecStart=%s: want /path/to/tasker SUBCOMMAND FLAGS", exec[0])
		return su, false
	}
	if !filepath.IsAbs(words[0]) || filepath.Base(words[0]) != "tasker" {
		p.add(u.where, "ExecStart runs %s: want an absolute path to tasker", words[0])
	}
	su.inv = cli.parse(u.where, words[1:], p)
	if su.inv == nil {
		return su, false
	}
	su.srv = checkServer(su.inv, p)
	if host, _, err := splitHostPort(su.inv.get("listen")); err == nil && !isLoopback(host) && su.inv.get("tls-cert") == "" {
		p.add(u.where, "serves %s without TLS: a unit runs on a real network; give --tls-cert and --tls-key", su.inv.get("listen"))
	}

	svc := func(key string) string { return u.get("Service", key) }
	if svc("Restart") != "on-failure" {
		p.add(u.where, "Restart=%s: want on-failure", svc("Restart"))
	}
	if svc("KillSignal") != "SIGTERM" {
		p.add(u.where, "KillSignal=%s: want SIGTERM, which starts tasker's graceful shutdown", svc("KillSignal"))
	}
	need := stopTime(su.inv, p)
	if stop, err := unitTimespan(svc("TimeoutStopSec")); err != nil || stop <= need {
		p.add(u.where, "TimeoutStopSec=%s: want more than %s, or SIGKILL cuts the shutdown short", svc("TimeoutStopSec"), need)
	}
	if svc("DynamicUser") != "yes" && (svc("User") == "" || svc("User") == "root") {
		p.add(u.where, "want DynamicUser=yes or a User= other than root")
	}
	for key, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes"} {
		if svc(key) != want {
			p.add(u.where, "%s=%s: want %s", key, svc(key), want)
		}
	}
	if su.inv.sub == "coordinator" {
		checkUnitDB(u, su.inv, p)
	}
	checkCredentials(u, su.inv, p)
	return su, true
}

// checkUnitDB wants a SQLite file inside the unit's StateDirectory, the
// only place a DynamicUser service may write.
func checkUnitDB(u *unit, inv *invocation, p *problems) {
	db := inv.get("db")
	if parsed, err := url.Parse(db); err == nil && (parsed.Scheme == "postgres" || parsed.Scheme == "postgresql") {
		return
	}
	state := u.get("Service", "StateDirectory")
	if state == "" {
		p.add(u.where, "SQLite --db %s but no StateDirectory=", db)
		return
	}
	file := strings.TrimPrefix(db, "sqlite:")
	if !strings.HasPrefix(file, "%S/"+state+"/") && !strings.HasPrefix(file, "/var/lib/"+state+"/") {
		p.add(u.where, "--db %s is outside StateDirectory=%s (%%S/%s/...)", db, state, state)
	}
}

// checkCredentials wants every %d/NAME a flag names loaded with
// LoadCredential=NAME:..., so root-only files reach the DynamicUser.
func checkCredentials(u *unit, inv *invocation, p *problems) {
	loaded := map[string]bool{}
	for _, lc := range u.sections["Service"]["LoadCredential"] {
		name, _, _ := strings.Cut(lc, ":")
		loaded[name] = true
	}
	for name, values := range inv.set {
		for _, v := range values {
			if cred, ok := strings.CutPrefix(v, "%d/"); ok && !loaded[cred] {
				p.add(u.where, "--%s %s: no LoadCredential=%s:...", name, v, cred)
			}
		}
	}
}

// unitTimespan parses the systemd time spans used here: "45", "45s",
// "1min 30s".
func unitTimespan(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	s = strings.ReplaceAll(strings.ReplaceAll(s, " ", ""), "min", "m")
	return time.ParseDuration(s)
}

// verifyUnits runs systemd-analyze verify on the units, with ExecStart
// pointed at the freshly built binary; it reports unknown keys and bad
// values that the checks above do not know about.
func verifyUnits(t *testing.T, dir, bin string) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the units were checked as text only")
	}
	files, err := filepath.Glob(filepath.Join(dir, "systemd", "*.service"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	tmp := t.TempDir()
	args := []string{"verify", "--man=no"}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		text := regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAllString(string(data), "ExecStart="+bin)
		out := filepath.Join(tmp, filepath.Base(f))
		require.NoError(t, os.WriteFile(out, []byte(text), 0o644))
		args = append(args, out)
	}
	out, err := exec.Command(analyze, args...).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify warns")
}
