package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/tasker-go/tasker/auth"
)

// The subset of the Kubernetes API the manifests use. Decoding is strict,
// so a misspelt field (readinesProbe) fails; a new field needs adding here.
type k8sObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   k8sMeta           `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
	Type       string            `json:"type"`
	// Kustomization.
	Namespace string   `json:"namespace"`
	Resources []string `json:"resources"`
}

type k8sMeta struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type workloadSpec struct {
	Replicas            *int          `json:"replicas"`
	ServiceName         string        `json:"serviceName"`
	PodManagementPolicy string        `json:"podManagementPolicy"`
	Selector            labelSelector `json:"selector"`
	Template            struct {
		Metadata k8sMeta `json:"metadata"`
		Spec     podSpec `json:"spec"`
	} `json:"template"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `json:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int  `json:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `json:"runAsNonRoot"`
		RunAsUser      *int64 `json:"runAsUser"`
		RunAsGroup     *int64 `json:"runAsGroup"`
		SeccompProfile *struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	} `json:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int           `json:"maxSkew"`
		TopologyKey       string        `json:"topologyKey"`
		WhenUnsatisfiable string        `json:"whenUnsatisfiable"`
		LabelSelector     labelSelector `json:"labelSelector"`
	} `json:"topologySpreadConstraints"`
	Containers []container `json:"containers"`
	Volumes    []podVolume `json:"volumes"`
}

type podVolume struct {
	Name      string `json:"name"`
	ConfigMap *struct {
		Name string `json:"name"`
	} `json:"configMap"`
	Secret *struct {
		SecretName string `json:"secretName"`
	} `json:"secret"`
}

type container struct {
	Name            string   `json:"name"`
	Image           string   `json:"image"`
	ImagePullPolicy string   `json:"imagePullPolicy"`
	Command         []string `json:"command"`
	Args            []string `json:"args"`
	Env             []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `json:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `json:"configMapKeyRef"`
			FieldRef        *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	} `json:"ports"`
	StartupProbe   *probe `json:"startupProbe"`
	ReadinessProbe *probe `json:"readinessProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"volumeMounts"`
}

type keyRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional"`
}

type probe struct {
	GRPC *struct {
		Port    int     `json:"port"`
		Service *string `json:"service"`
	} `json:"grpc"`
	HTTPGet *struct {
		Path string      `json:"path"`
		Port intOrString `json:"port"`
	} `json:"httpGet"`
	InitialDelaySeconds int `json:"initialDelaySeconds"`
	PeriodSeconds       int `json:"periodSeconds"`
	TimeoutSeconds      int `json:"timeoutSeconds"`
	FailureThreshold    int `json:"failureThreshold"`
	SuccessThreshold    int `json:"successThreshold"`
}

type serviceSpec struct {
	Type                     string            `json:"type"`
	ClusterIP                string            `json:"clusterIP"`
	PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses"`
	Selector                 map[string]string `json:"selector"`
	Ports                    []struct {
		Name        string      `json:"name"`
		Port        int         `json:"port"`
		TargetPort  intOrString `json:"targetPort"`
		Protocol    string      `json:"protocol"`
		AppProtocol string      `json:"appProtocol"`
	} `json:"ports"`
}

type networkPolicySpec struct {
	PodSelector labelSelector `json:"podSelector"`
	PolicyTypes []string      `json:"policyTypes"`
	Ingress     []struct {
		From []struct {
			PodSelector *labelSelector `json:"podSelector"`
		} `json:"from"`
		Ports []struct {
			Port     intOrString `json:"port"`
			Protocol string      `json:"protocol"`
		} `json:"ports"`
	} `json:"ingress"`
}

type pdbSpec struct {
	MinAvailable   *intOrString  `json:"minAvailable"`
	MaxUnavailable *intOrString  `json:"maxUnavailable"`
	Selector       labelSelector `json:"selector"`
}

// intOrString is a port given by number or by name.
type intOrString struct {
	num  int
	name string
}

func (v *intOrString) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &v.num); err == nil {
		return nil
	}
	return json.Unmarshal(data, &v.name)
}

func (v intOrString) String() string {
	if v.name != "" {
		return v.name
	}
	return strconv.Itoa(v.num)
}

// workload is a Deployment or StatefulSet running tasker.
type workload struct {
	where, kind, name string
	replicas          int
	spec              workloadSpec
	inv               *invocation
	srv               served
	c                 *container
}

// resolve maps a port (number or container port name) to a containerPort.
func (w *workload) resolve(port intOrString) int {
	for _, cp := range w.c.Ports {
		if cp.ContainerPort == port.num || (port.name != "" && cp.Name == port.name) {
			return cp.ContainerPort
		}
	}
	return 0
}

func (w *workload) selectedBy(sel map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if w.spec.Template.Metadata.Labels[k] != v {
			return false
		}
	}
	return true
}

type k8sFacts struct {
	listenPorts map[int]bool
	httpPaths   []string
	coordinator *invocation
	tokens      string
}

type k8sManifests struct {
	kustomization *k8sObject
	configMaps    map[string]map[string]string
	secrets       map[string]map[string]string
	workloads     []*workload
	services      map[string]serviceSpec
	policies      map[string]networkPolicySpec
	pdbs          map[string]pdbSpec
	namespaces    []string
	files         []string
}

var (
	envRef       = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	docSeparator = regexp.MustCompile(`(?m)^---\s*$`)
)

func checkKubernetes(cli *cli, dir string, p *problems) k8sFacts {
	f := k8sFacts{listenPorts: map[int]bool{}}
	m := readManifests(dir, p)
	checkKustomization(dir, m, p)
	for _, w := range m.workloads {
		checkWorkload(cli, w, m, &f, p)
	}
	for name, svc := range m.services {
		where := "kubernetes Service " + name
		matched := 0
		for _, w := range m.workloads {
			if !w.selectedBy(svc.Selector) || w.c == nil {
				continue
			}
			matched++
			for _, sp := range svc.Ports {
				if port := w.resolve(sp.TargetPort); port == 0 {
					p.add(where, "port %s: targetPort %s is no container port of %s", sp.Name, sp.TargetPort, w.name)
				}
			}
		}
		if matched == 0 {
			p.add(where, "selector %v matches no workload", svc.Selector)
		}
	}
	for name, np := range m.policies {
		where := "kubernetes NetworkPolicy " + name
		for _, w := range m.workloads {
			if !w.selectedBy(np.PodSelector.MatchLabels) {
				continue
			}
			for _, rule := range np.Ingress {
				for _, from := range rule.From {
					if from.PodSelector != nil && !slices.ContainsFunc(m.workloads, func(o *workload) bool { return o.selectedBy(from.PodSelector.MatchLabels) }) {
						p.add(where, "from podSelector %v matches no workload", from.PodSelector.MatchLabels)
					}
				}
				for _, port := range rule.Ports {
					if n := w.resolve(port.Port); n != w.srv.grpcPort && n != w.srv.httpPort {
						p.add(where, "port %s is not one %s listens on", port.Port, w.name)
					}
				}
			}
		}
	}
	for name, pdb := range m.pdbs {
		if !slices.ContainsFunc(m.workloads, func(w *workload) bool { return w.selectedBy(pdb.Selector.MatchLabels) }) {
			p.add("kubernetes PodDisruptionBudget "+name, "selector matches no workload")
		}
	}
	for _, w := range m.workloads {
		if w.inv != nil && w.inv.sub == "executor" {
			checkExecutorTargets(w, m, p)
		}
	}
	return f
}

func readManifests(dir string, p *problems) k8sManifests {
	m := k8sManifests{
		configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{},
		services: map[string]serviceSpec{}, policies: map[string]networkPolicySpec{}, pdbs: map[string]pdbSpec{},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		p.add("kubernetes", "no manifests in %s", dir)
	}
	for _, file := range files {
		base := filepath.Base(file)
		m.files = append(m.files, base)
		data, err := os.ReadFile(file)
		if err != nil {
			p.add("kubernetes/"+base, "%v", err)
			continue
		}
		for i, doc := range docSeparator.Split(string(data), -1) {
			where := fmt.Sprintf("kubernetes/%s document %d", base, i+1)
			var obj k8sObject
			if err := strictYAML([]byte(doc), &obj); err != nil {
				p.add(where, "%v", err)
				continue
			}
			if obj.Kind == "" {
				continue // comments only
			}
			where = "kubernetes/" + base + " " + obj.Kind + " " + obj.Metadata.Name
			switch obj.Kind {
			case "Kustomization":
				m.kustomization = &obj
			case "Namespace":
				m.namespaces = append(m.namespaces, obj.Metadata.Name)
			case "ConfigMap":
				m.configMaps[obj.Metadata.Name] = obj.Data
			case "Secret":
				m.secrets[obj.Metadata.Name] = obj.StringData
			case "Deployment", "StatefulSet":
				w := &workload{where: where, kind: obj.Kind, name: obj.Metadata.Name}
				if strictJSON(where, obj.Spec, &w.spec, p) {
					m.workloads = append(m.workloads, w)
				}
			case "Service":
				var s serviceSpec
				if strictJSON(where, obj.Spec, &s, p) {
					m.services[obj.Metadata.Name] = s
				}
			case "NetworkPolicy":
				var np networkPolicySpec
				if strictJSON(where, obj.Spec, &np, p) {
					m.policies[obj.Metadata.Name] = np
				}
			case "PodDisruptionBudget":
				var pdb pdbSpec
				if strictJSON(where, obj.Spec, &pdb, p) {
					m.pdbs[obj.Metadata.Name] = pdb
				}
			default:
				p.add(where, "kind %s is not checked by deploy_test.go; teach it", obj.Kind)
			}
		}
	}
	return m
}

func strictYAML(doc []byte, v any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func strictJSON(where string, data json.RawMessage, v any, p *problems) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		p.add(where, "spec: %v", err)
		return false
	}
	return true
}

// checkKustomization wants every manifest but examples listed.
func checkKustomization(dir string, m k8sManifests, p *problems) {
	if m.kustomization == nil {
		p.add("kubernetes", "no kustomization.yaml")
		return
	}
	for _, r := range m.kustomization.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			p.add("kubernetes/kustomization.yaml", "resource %s: %v", r, err)
		}
	}
	if !slices.Contains(m.namespaces, m.kustomization.Namespace) {
		p.add("kubernetes/kustomization.yaml", "namespace %s: no Namespace manifest creates it", m.kustomization.Namespace)
	}
	for _, f := range m.files {
		if f != "kustomization.yaml" && !strings.HasSuffix(f, ".example.yaml") && !slices.Contains(m.kustomization.Resources, f) {
			p.add("kubernetes/kustomization.yaml", "does not list %s", f)
		}
	}
}

func checkWorkload(cli *cli, w *workload, m k8sManifests, f *k8sFacts, p *problems) {
	spec := &w.spec
	w.replicas = 1
	if spec.Replicas != nil {
		w.replicas = *spec.Replicas
	}
	if !w.selectedBy(spec.Selector.MatchLabels) {
		p.add(w.where, "selector %v does not match the pod template's labels", spec.Selector.MatchLabels)
	}
	pod := spec.Template.Spec
	if len(pod.Containers) != 1 {
		p.add(w.where, "want exactly one container, got %d", len(pod.Containers))
		return
	}
	w.c = &pod.Containers[0]
	c := w.c
	if len(c.Command) > 0 && !slices.Equal(c.Command, []string{"/tasker"}) {
		p.add(w.where, "command %q: leave it to the image's ENTRYPOINT /tasker", c.Command)
	}
	if !strings.HasPrefix(c.Image, "tasker") {
		p.add(w.where, "image %q: want the tasker image (kustomize edit set image tasker=...)", c.Image)
	}
	checkEnv(w, m, p)
	w.inv = cli.parse(w.where, c.Args, p)
	if w.inv == nil {
		return
	}
	w.srv = checkServer(w.inv, p)
	f.listenPorts[w.srv.grpcPort] = true
	if w.srv.httpPort != 0 {
		f.listenPorts[w.srv.httpPort] = true
	}
	for _, cp := range c.Ports {
		if cp.ContainerPort != w.srv.grpcPort && cp.ContainerPort != w.srv.httpPort {
			p.add(w.where, "containerPort %d (%s): tasker listens on %d and %d", cp.ContainerPort, cp.Name, w.srv.grpcPort, w.srv.httpPort)
		}
	}
	for _, port := range []int{w.srv.grpcPort, w.srv.httpPort} {
		if port != 0 && w.resolve(intOrString{num: port}) == 0 {
			p.add(w.where, "tasker listens on %d but no containerPort declares it", port)
		}
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		p.add(w.where, "want readiness and liveness probes")
	}
	for name, pr := range map[string]*probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		checkProbe(w, name, pr, f, p)
	}
	checkFileFlags(w, pod, m, f, p)
	checkPodSecurity(w, pod, p)
	if w.inv.sub == "coordinator" {
		f.coordinator = w.inv
		if w.replicas > 1 && w.kind != "StatefulSet" {
			p.add(w.where, "%d coordinator replicas need a StatefulSet: executors must register with each by name", w.replicas)
		}
	}
	if w.kind == "StatefulSet" {
		svc, ok := m.services[spec.ServiceName]
		if !ok || svc.ClusterIP != "None" || !w.selectedBy(svc.Selector) {
			p.add(w.where, "serviceName %q: want a headless Service selecting these pods, for their DNS names", spec.ServiceName)
		}
	}
}

// checkEnv wants every $(VAR) in args defined before use (Kubernetes leaves
// an unknown one as literal text) and every reference to exist.
func checkEnv(w *workload, m k8sManifests, p *problems) {
	defined := map[string]bool{}
	for _, e := range w.c.Env {
		defined[e.Name] = true
		if e.ValueFrom == nil {
			continue
		}
		switch vf := e.ValueFrom; {
		case vf.SecretKeyRef != nil:
			if _, ok := m.secrets[vf.SecretKeyRef.Name][vf.SecretKeyRef.Key]; !ok {
				p.add(w.where, "env %s: Secret %s has no key %s (see secret.example.yaml)", e.Name, vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
			}
		case vf.ConfigMapKeyRef != nil:
			if _, ok := m.configMaps[vf.ConfigMapKeyRef.Name][vf.ConfigMapKeyRef.Key]; !ok {
				p.add(w.where, "env %s: ConfigMap %s has no key %s", e.Name, vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
			}
		case vf.FieldRef != nil:
			if !slices.Contains([]string{"metadata.name", "metadata.namespace", "status.podIP", "spec.nodeName"}, vf.FieldRef.FieldPath) {
				p.add(w.where, "env %s: fieldRef %s is not a downward API field", e.Name, vf.FieldRef.FieldPath)
			}
		}
	}
	for _, arg := range w.c.Args {
		for _, ref := range envRef.FindAllStringSubmatch(arg, -1) {
			if !defined[ref[1]] {
				p.add(w.where, "arg %q uses $(%s), which the container's env does not define", arg, ref[1])
			}
		}
	}
}

// checkProbe wants gRPC probes on the gRPC port and HTTP probes on the
// --http-listen port.
func checkProbe(w *workload, name string, pr *probe, f *k8sFacts, p *problems) {
	if pr == nil {
		return
	}
	switch {
	case pr.GRPC != nil && pr.HTTPGet == nil:
		if pr.GRPC.Port != w.srv.grpcPort {
			p.add(w.where, "%s: gRPC port %d, but tasker serves gRPC on %d", name, pr.GRPC.Port, w.srv.grpcPort)
		}
		if w.inv.get("tls-cert") != "" {
			p.add(w.where, "%s: the kubelet's gRPC probe cannot do TLS; probe /healthz over HTTP", name)
		}
	case pr.HTTPGet != nil && pr.GRPC == nil:
		if port := w.resolve(pr.HTTPGet.Port); port == 0 || port != w.srv.httpPort {
			p.add(w.where, "%s: HTTP port %s, but /healthz is served on --http-listen port %d", name, pr.HTTPGet.Port, w.srv.httpPort)
		}
		f.httpPaths = append(f.httpPaths, pr.HTTPGet.Path)
	default:
		p.add(w.where, "%s: want exactly one of grpc or httpGet", name)
	}
}

// checkFileFlags wants each file a flag names to be mounted from a
// ConfigMap (or Secret) that has it, and loads the tokens file.
func checkFileFlags(w *workload, pod podSpec, m k8sManifests, f *k8sFacts, p *problems) {
	for _, flag := range []string{"tokens-file", "jwt-key", "tls-cert", "tls-key", "tls-ca", "tls-client-ca"} {
		file := w.inv.get(flag)
		if file == "" {
			continue
		}
		found := false
		for _, vm := range w.c.VolumeMounts {
			rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
			if !ok {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name != vm.Name {
					continue
				}
				switch {
				case v.ConfigMap != nil:
					content, ok := m.configMaps[v.ConfigMap.Name][path.Clean(rel)]
					found = ok
					if ok && flag == "tokens-file" {
						f.tokens = content
						if _, err := auth.ParseTokens([]byte(content)); err != nil {
							p.add(w.where, "--tokens-file from ConfigMap %s: %v", v.ConfigMap.Name, err)
						}
					}
				case v.Secret != nil:
					found = true // secrets are created out of band
				}
			}
		}
		if !found {
			p.add(w.where, "--%s %s: no mounted ConfigMap or Secret holds it", flag, file)
		}
	}
	for _, vm := range w.c.VolumeMounts {
		if !slices.ContainsFunc(pod.Volumes, func(v podVolume) bool { return v.Name == vm.Name }) {
			p.add(w.where, "volumeMount %s: no such volume", vm.Name)
		}
	}
}

func checkPodSecurity(w *workload, pod podSpec, p *problems) {
	sc := w.c.SecurityContext
	if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		p.add(w.where, "want securityContext.runAsNonRoot: true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		p.add(w.where, "container securityContext: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL")
	}
	r := w.c.Resources
	if r.Requests["cpu"] == "" || r.Requests["memory"] == "" || r.Limits["memory"] == "" {
		p.add(w.where, "resources: want cpu and memory requests and a memory limit")
	}
	grace := 30 * time.Second // the Kubernetes default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if need := stopTime(w.inv, &problems{}); grace <= need {
		p.add(w.where, "terminationGracePeriodSeconds %s: want more than %s, or SIGKILL cuts the shutdown short", grace, need)
	}
}

// checkExecutorTargets wants an executor to register with every coordinator
// replica by a name that resolves to it, on its gRPC port.
func checkExecutorTargets(ex *workload, m k8sManifests, p *problems) {
	seen := map[string]map[int]bool{}
	for _, target := range coordinatorTargets(ex.inv) {
		host, port, err := splitHostPort(target)
		if err != nil {
			p.add(ex.where, "coordinator address: %v", err)
			continue
		}
		pod, svcName, isPod := strings.Cut(host, ".")
		if !isPod {
			svcName = host
		}
		svc, ok := m.services[svcName]
		if !ok {
			p.add(ex.where, "registers with %s: no Service %s", target, svcName)
			continue
		}
		var coord *workload
		for _, w := range m.workloads {
			if w.selectedBy(svc.Selector) && w.inv != nil && w.inv.sub == "coordinator" {
				coord = w
			}
		}
		if coord == nil {
			p.add(ex.where, "registers with %s: Service %s selects no coordinator", target, svcName)
			continue
		}
		portOK := false
		for _, sp := range svc.Ports {
			portOK = portOK || (sp.Port == port && coord.resolve(sp.TargetPort) == coord.srv.grpcPort)
		}
		if !portOK {
			p.add(ex.where, "registers with %s: Service %s port %d does not lead to the coordinator's gRPC port", target, svcName, port)
		}
		if !isPod {
			if coord.replicas > 1 {
				p.add(ex.where, "registers with Service %s, which reaches only one of %d coordinators", svcName, coord.replicas)
			}
			continue
		}
		ordinal, err := strconv.Atoi(strings.TrimPrefix(pod, coord.name+"-"))
		if coord.kind != "StatefulSet" || coord.spec.ServiceName != svcName || err != nil || ordinal < 0 || ordinal >= coord.replicas {
			p.add(ex.where, "registers with %s, which is no pod of StatefulSet %s (replicas %d, serviceName %s)", target, coord.name, coord.replicas, coord.spec.ServiceName)
			continue
		}
		if seen[coord.name] == nil {
			seen[coord.name] = map[int]bool{}
		}
		seen[coord.name][ordinal] = true
	}
	for _, w := range m.workloads {
		if w.kind == "StatefulSet" && w.inv != nil && w.inv.sub == "coordinator" && len(seen[w.name]) != w.replicas {
			p.add(ex.where, "registers with %d of the %d replicas of %s; a coordinator without executors never runs its tasks", len(seen[w.name]), w.replicas, w.name)
		}
	}
}

// buildKustomization renders the manifests with kubectl's kustomize, when
// kubectl is installed, so kustomization.yaml itself is known to work.
func buildKustomization(t *testing.T, dir string) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed; kustomization.yaml was checked as text only")
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(dir, "kubernetes")).CombinedOutput()
	require.NoError(t, err, "kubectl kustomize:\n%s", out)
	rendered := docSeparator.Split(string(out), -1)
	// Every object of every listed file comes out, in the namespace.
	var kust k8sObject
	data, err := os.ReadFile(filepath.Join(dir, "kubernetes", "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, strictYAML(data, &kust))
	objects := 0
	for _, r := range kust.Resources {
		data, err := os.ReadFile(filepath.Join(dir, "kubernetes", r))
		require.NoError(t, err)
		for _, doc := range docSeparator.Split(string(data), -1) {
			var obj k8sObject
			require.NoError(t, strictYAML([]byte(doc), &obj))
			if obj.Kind != "" {
				objects++
			}
		}
	}
	require.Len(t, rendered, objects, "kubectl kustomize:\n%s", out)
	for _, doc := range rendered {
		if strings.Contains(doc, "kind: Namespace\n") {
			require.Contains(t, doc, "name: "+kust.Namespace)
			continue
		}
		require.Contains(t, doc, "namespace: "+kust.Namespace)
	}
}
