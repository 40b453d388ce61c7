package template_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

func TestZZProbe(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzParse/*")
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		lines := strings.SplitN(string(raw), "\n", 2)
		q := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(lines[1]), "[]byte("), ")")
		data, err := strconv.Unquote(q)
		if err != nil {
			t.Fatal(f, err)
		}
		tpl, err := template.Parse([]byte(data))
		if err != nil {
			t.Logf("%s: parse: %v", filepath.Base(f), err)
			continue
		}
		if err := template.Validate(tpl, template.Limits{}); err != nil {
			t.Logf("%s: validate: %v", filepath.Base(f), err)
			continue
		}
		p, err := templatepb.ToProto(tpl)
		if err != nil {
			t.Logf("%s: ToProto: %v", filepath.Base(f), err)
			continue
		}
		t1, err := templatepb.FromProto(p)
		if err != nil {
			t.Logf("%s: FromProto: %v", filepath.Base(f), err)
			continue
		}
		t1.Normalize()
		spec, _ := json.Marshal(t1)
		var t2 template.Template
		if err := json.Unmarshal(spec, &t2); err != nil {
			t.Logf("%s: unmarshal: %v", filepath.Base(f), err)
			continue
		}
		p2, _ := templatepb.ToProto(&t2)
		t3, _ := templatepb.FromProto(p2)
		t.Logf("%s: ok digest local=%v server=%v reapply=%v", filepath.Base(f), template.Digest(tpl)[:8], template.Digest(t1)[:8], template.Digest(t3)[:8])
	}
}
