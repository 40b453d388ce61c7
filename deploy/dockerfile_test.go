package deploy

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// goBuild is one `go build` the Dockerfile runs.
type goBuild struct {
	env  []string
	args []string // after "go"
	// out is the -o path inside the build stage; outIndex its index in args.
	out      string
	outIndex int
	pkg      string
}

// dockerfile is what the image build produces and declares.
type dockerfile struct {
	builds              []goBuild
	taskerOut, probeOut string
	// binaries maps a path in the final image to the package built there.
	binaries map[string]string
	expose   []int
}

var dockerInstructions = []string{
	"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
	"ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}

var (
	envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	packageMain   = regexp.MustCompile(`(?m)^package main$`)
	goDirective   = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)
)

type dockerInstr struct {
	line      int
	cmd, args string
}

type dockerStage struct {
	image, name string
	instrs      []dockerInstr
}

// readDockerfile parses the Dockerfile and checks it: a Debian Go build
// stage matching go.mod, static builds of packages that exist, a distroless
// (or scratch) final stage running as nonroot, an exec-form ENTRYPOINT that
// is the copied tasker binary, a VOLUME the nonroot user owns.
func readDockerfile(file, repo string, p *problems) dockerfile {
	df := dockerfile{binaries: map[string]string{}}
	const where = "Dockerfile"
	data, err := os.ReadFile(file)
	if err != nil {
		p.add(where, "%v", err)
		return df
	}
	stages := dockerStages(string(data), p)
	if len(stages) < 2 {
		p.add(where, "want a build stage and a final stage, got %d stage(s)", len(stages))
		return df
	}
	build, final := stages[0], stages[len(stages)-1]
	checkBuildImage(build, repo, p)
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		p.add(where, "final stage FROM %s: want gcr.io/distroless/static-* or scratch (the binary is static)", final.image)
	}

	mkdirs := ""
	for _, in := range build.instrs {
		if in.cmd != "RUN" {
			continue
		}
		mkdirs += in.args + "\n"
		for _, b := range goBuilds(in, p) {
			checkBuildPackage(b, repo, p)
			switch b.pkg {
			case "./cmd/tasker":
				df.taskerOut = b.out
				checkStaticFlags(b, p)
			case "./deploy/healthprobe":
				df.probeOut = b.out
			}
			df.builds = append(df.builds, b)
		}
	}
	if df.taskerOut == "" {
		p.add(where, "no RUN go build ... ./cmd/tasker in the build stage")
	}

	user, volumes, owned := "", []string(nil), map[string]string{}
	var entrypoint, cmd []string
	for _, in := range final.instrs {
		switch in.cmd {
		case "COPY":
			copyInto(in, build, df, owned, p)
		case "USER":
			user = in.args
		case "EXPOSE":
			for _, f := range strings.Fields(in.args) {
				port, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					p.add(where, "line %d: EXPOSE %q is not a port", in.line, f)
					continue
				}
				df.expose = append(df.expose, port)
			}
		case "VOLUME":
			volumes = execForm(in, p)
		case "ENTRYPOINT":
			entrypoint = execForm(in, p)
		case "CMD":
			cmd = execForm(in, p)
		}
	}
	for _, in := range final.instrs {
		if in.cmd != "COPY" {
			continue
		}
		if words, err := shellWords(in.args); err == nil && len(words) >= 2 {
			src, dest := words[len(words)-2], words[len(words)-1]
			for _, b := range df.builds {
				if b.out == src {
					df.binaries[dest] = b.pkg
				}
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u != "65532" && u != "nonroot" {
		p.add(where, "final stage USER %q: want nonroot (65532)", user)
	}
	switch {
	case len(entrypoint) == 0:
		p.add(where, "no ENTRYPOINT in the final stage")
	case df.binaries[entrypoint[0]] != "./cmd/tasker":
		p.add(where, "ENTRYPOINT %q is not where the final stage COPYs the ./cmd/tasker build", entrypoint[0])
	}
	if !slices.Equal(cmd, []string{"--help"}) {
		p.add(where, "CMD %q: want [\"--help\"]: the image serves two roles, so each deployment says which", cmd)
	}
	if len(volumes) == 0 {
		p.add(where, "no VOLUME for the SQLite file")
	}
	for _, v := range volumes {
		checkVolume(v, owned, mkdirs, p)
	}
	return df
}

// dockerStages splits the file into stages of instructions, joining
// continued lines and dropping comments as docker does.
func dockerStages(text string, p *problems) []dockerStage {
	var stages []dockerStage
	var cur strings.Builder
	start := 0
	lines := strings.Split(text, "\n")
	for i, raw := range lines {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		logical := cur.String()
		cur.Reset()
		if logical == "" {
			continue
		}
		cmd, args, _ := strings.Cut(logical, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		if !slices.Contains(dockerInstructions, cmd) {
			p.add("Dockerfile", "line %d: unknown instruction %q", start, cmd)
			continue
		}
		if cmd == "FROM" {
			f := strings.Fields(args)
			st := dockerStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if cmd != "ARG" {
				p.add("Dockerfile", "line %d: %s before FROM", start, cmd)
			}
			continue
		}
		last := &stages[len(stages)-1]
		last.instrs = append(last.instrs, dockerInstr{line: start, cmd: cmd, args: args})
	}
	return stages
}

// checkBuildImage wants a Debian golang image of the Go release go.mod
// names: cgo links glibc statically there, and an older Go would not build.
func checkBuildImage(build dockerStage, repo string, p *problems) {
	image, tag, _ := strings.Cut(build.image, ":")
	if image != "golang" {
		p.add("Dockerfile", "build stage FROM %s: want golang (Debian-based, for cgo)", build.image)
		return
	}
	if strings.Contains(tag, "alpine") {
		p.add("Dockerfile", "build stage FROM %s: Alpine's musl is not what go-sqlite3 is tested with; use the Debian image", build.image)
	}
	mod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		p.add("Dockerfile", "%v", err)
		return
	}
	m := goDirective.FindSubmatch(mod)
	if m == nil {
		p.add("Dockerfile", "go.mod has no go directive")
		return
	}
	if tag != string(m[1]) && !strings.HasPrefix(tag, string(m[1])+".") && !strings.HasPrefix(tag, string(m[1])+"-") {
		p.add("Dockerfile", "build stage FROM %s, but go.mod says go %s", build.image, m[1])
	}
}

// goBuildValueFlags are the go build flags that take a value.
var goBuildValueFlags = []string{
	"o", "tags", "ldflags", "gcflags", "asmflags", "mod", "modfile", "p", "pgo", "buildmode",
	"installsuffix", "compiler", "overlay", "pkgdir", "toolexec", "C",
}

// goBuilds finds the `go build` commands of a RUN instruction.
func goBuilds(in dockerInstr, p *problems) []goBuild {
	words, err := shellWords(in.args)
	if err != nil {
		p.add("Dockerfile", "line %d: %v", in.line, err)
		return nil
	}
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		words = words[1:] // RUN --mount=... and the like
	}
	var out []goBuild
	for cmd := range splitCommands(words) {
		var env []string
		for len(cmd) > 0 && envAssignment.MatchString(cmd[0]) {
			env, cmd = append(env, cmd[0]), cmd[1:]
		}
		if len(cmd) < 2 || cmd[0] != "go" || cmd[1] != "build" {
			continue
		}
		b := goBuild{env: env, args: cmd[1:], outIndex: -1}
		var pkgs []string
		for i := 1; i < len(b.args); i++ {
			name, _, hasValue := strings.Cut(strings.TrimLeft(b.args[i], "-"), "=")
			switch {
			case !strings.HasPrefix(b.args[i], "-"):
				pkgs = append(pkgs, b.args[i])
			case slices.Contains(goBuildValueFlags, name) && !hasValue && i+1 < len(b.args):
				if name == "o" {
					b.out, b.outIndex = b.args[i+1], i+1
				}
				i++
			}
		}
		if b.outIndex < 0 || len(pkgs) != 1 {
			p.add("Dockerfile", "line %d: want go build ... -o OUT PACKAGE, got %q", in.line, strings.Join(cmd, " "))
			continue
		}
		b.pkg = pkgs[0]
		out = append(out, b)
	}
	return out
}

// splitCommands yields the commands of a && list.
func splitCommands(words []string) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		start := 0
		for i, w := range words {
			if w == "&&" || w == ";" {
				if !yield(words[start:i]) {
					return
				}
				start = i + 1
			}
		}
		yield(words[start:])
	}
}

// checkBuildPackage wants the built package to be a main package in this
// repository.
func checkBuildPackage(b goBuild, repo string, p *problems) {
	if !strings.HasPrefix(b.pkg, "./") {
		p.add("Dockerfile", "go build %s: want a ./relative package of this module", b.pkg)
		return
	}
	files, _ := filepath.Glob(filepath.Join(repo, filepath.FromSlash(b.pkg), "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if data, err := os.ReadFile(f); err == nil && packageMain.Match(data) {
			return
		}
	}
	p.add("Dockerfile", "go build %s: no main package there", b.pkg)
}

// checkStaticFlags wants what a static cgo build needs; runBuilds then
// checks the result really is static.
func checkStaticFlags(b goBuild, p *problems) {
	if !slices.Contains(b.env, "CGO_ENABLED=1") {
		p.add("Dockerfile", "go build ./cmd/tasker without CGO_ENABLED=1: go-sqlite3 needs cgo")
	}
	joined := strings.Join(b.args, " ")
	for _, want := range []string{"netgo", "osusergo", "-static"} {
		if !strings.Contains(joined, want) {
			p.add("Dockerfile", "go build ./cmd/tasker without %s: the binary must be static for the distroless image", want)
		}
	}
}

// copyInto records a final-stage COPY: it must come from the build stage,
// and a --chown to the nonroot user marks what it may write.
func copyInto(in dockerInstr, build dockerStage, df dockerfile, owned map[string]string, p *problems) {
	words, err := shellWords(in.args)
	if err != nil || len(words) < 2 {
		p.add("Dockerfile", "line %d: COPY %s", in.line, in.args)
		return
	}
	from, chown := "", ""
	for _, w := range words[:len(words)-2] {
		if v, ok := strings.CutPrefix(w, "--from="); ok {
			from = v
		}
		if v, ok := strings.CutPrefix(w, "--chown="); ok {
			chown = v
		}
	}
	src, dest := words[len(words)-2], words[len(words)-1]
	if from != build.name {
		p.add("Dockerfile", "line %d: COPY %s into the final stage is not --from=%s", in.line, src, build.name)
		return
	}
	if u, _, _ := strings.Cut(chown, ":"); u == "65532" || u == "nonroot" {
		owned[dest] = src
		return
	}
	isOutput := false
	for _, b := range df.builds {
		isOutput = isOutput || b.out == src
	}
	if !isOutput {
		p.add("Dockerfile", "line %d: COPY --from=%s %s: no go build in that stage writes it", in.line, from, src)
	}
}

// checkVolume wants the volume directory created in the build stage and
// copied into the image owned by nonroot, so a fresh named volume there is
// writable.
func checkVolume(v string, owned map[string]string, runs string, p *problems) {
	for dest, src := range owned {
		if rel, ok := strings.CutPrefix(v, strings.TrimSuffix(dest, "/")+"/"); ok || v == dest {
			made := path.Join(src, rel)
			if strings.Contains(runs, made) {
				return
			}
			p.add("Dockerfile", "VOLUME %s: the build stage never makes %s", v, made)
			return
		}
	}
	p.add("Dockerfile", "VOLUME %s: not copied into the image with --chown=65532, so nonroot could not write there", v)
}

func execForm(in dockerInstr, p *problems) []string {
	var out []string
	if err := json.Unmarshal([]byte(in.args), &out); err != nil {
		p.add("Dockerfile", "line %d: %s must be in exec form (a JSON array) so tasker is PID 1 and gets SIGTERM: %v", in.line, in.cmd, err)
	}
	return out
}

// staticELF reports an error unless the binary needs no dynamic loader and
// no shared libraries.
func staticELF(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (has an ELF interpreter): it would not run on distroless/static")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	if len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// checkDockerignore makes sure the ignore file keeps what the builds need.
func checkDockerignore(file string, df dockerfile, p *problems) {
	data, err := os.ReadFile(file)
	if err != nil {
		p.add("Dockerfile.dockerignore", "%v", err)
		return
	}
	needed := []string{"go.mod", "go.sum"}
	for _, b := range df.builds {
		needed = append(needed, path.Join(strings.TrimPrefix(b.pkg, "./"), "main.go"))
	}
	for _, line := range strings.Split(string(data), "\n") {
		pattern := strings.TrimPrefix(strings.TrimSpace(line), "/")
		if pattern == "" || strings.HasPrefix(pattern, "#") || strings.HasPrefix(pattern, "!") {
			continue
		}
		for _, n := range needed {
			pat, name := pattern, n
			if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
				pat, name = rest, path.Base(n)
			}
			if ok, _ := path.Match(pat, name); ok || strings.HasPrefix(n, pat+"/") {
				p.add("Dockerfile.dockerignore", "%q leaves %s out of the build context", line, n)
			}
		}
	}
}
