// Package templates holds example task templates: the order-fulfilment demo
// and Tasker's five reference workflow shapes (linear, diamond, tree,
// parallel merge, mixed). They are embedded so the CLI, tests and benchmarks
// can register them without locating files on disk.
package templates

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed *.yaml
var files embed.FS

// FS returns the template files, named like "linear_workflow.yaml" at the
// root. It is read-only.
func FS() fs.FS { return files }

// All returns every template file's content keyed by file name. Each call
// returns fresh copies, so callers may keep or change them.
func All() (map[string][]byte, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded templates: %w", err)
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := fs.ReadFile(files, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read embedded template %s: %w", e.Name(), err)
		}
		out[e.Name()] = data
	}
	return out, nil
}
