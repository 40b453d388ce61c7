package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

func newTemplateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Register and inspect task templates",
	}
	cmd.AddCommand(
		newTemplateApplyCmd(g),
		newTemplateGetCmd(g),
		newTemplateListCmd(g),
	)
	return cmd
}

func newTemplateApplyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apply FILE...",
		Short: "Register templates from YAML or JSON files (- reads stdin)",
		Long: "Register templates from YAML or JSON files; - reads stdin. A YAML file may\n" +
			"hold several templates, one per document (separated by --- lines). Every file is\n" +
			"read and checked, here and by the coordinator, before anything is\n" +
			"registered: if any file has a problem, each problem is printed with its file\n" +
			"and nothing is registered. Registering identical content again is a no-op\n" +
			"reported as \"unchanged\".\n\n" +
			"Warnings from the coordinator, such as a step handler that no connected\n" +
			"executor hosts, are printed to stderr as \"warning: ...\"; they do not stop\n" +
			"registration, since executors may connect later.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type file struct {
				// path names the template in messages: its file, and which
				// of the file's templates it is when there are several.
				path string
				tmpl *coordinatorv1.TaskTemplate
			}
			var (
				files []file
				errs  []error
				// seen finds one template given twice: the second would
				// fail to register after the first had registered.
				seen = map[string]string{}
			)
			for _, path := range args {
				tmpls, err := loadTemplates(path, g.env.Stdin)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for i, tmpl := range tmpls {
					label := path
					if len(tmpls) > 1 {
						label = fmt.Sprintf("%s (template %d of %d)", path, i+1, len(tmpls))
					}
					ref := protoTemplateRef(tmpl)
					if first, ok := seen[ref]; ok {
						errs = append(errs, fmt.Errorf("%s: %s is given twice, first in %s", label, ref, first))
						continue
					}
					seen[ref] = label
					files = append(files, file{path: label, tmpl: tmpl})
				}
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				// The coordinator checks every file before any is
				// registered, so a bad file in the middle cannot leave the
				// ones before it registered and the ones after it not.
				for _, f := range files {
					uctx, cancel := g.unary(ctx)
					_, err := c.RegisterTemplate(uctx, &coordinatorv1.RegisterTemplateRequest{Template: f.tmpl, ValidateOnly: true})
					cancel()
					if err != nil {
						if g.unreachable(c, err) != nil || ctx.Err() != nil {
							return err
						}
						errs = append(errs, fmt.Errorf("%s: %w", f.path, rpcErr(err)))
					}
				}
				if len(errs) > 0 {
					return errors.Join(errs...)
				}
				for _, f := range files {
					uctx, cancel := g.unary(ctx)
					resp, err := c.RegisterTemplate(uctx, &coordinatorv1.RegisterTemplateRequest{Template: f.tmpl})
					cancel()
					if err != nil {
						if g.unreachable(c, err) != nil || ctx.Err() != nil {
							return err
						}
						return fmt.Errorf("%s: %w", f.path, rpcErr(err))
					}
					verb := "registered"
					if !resp.GetCreated() {
						verb = "unchanged"
					}
					got := resp.GetTemplate()
					if got == nil {
						got = f.tmpl
					}
					fmt.Fprintf(g.env.Stdout, "%s %s\n", verb, protoTemplateRef(got))
					printWarnings(g.env.Stderr, resp.GetWarnings())
				}
				return nil
			})
		},
	}
}

// loadTemplates reads and parses one template file, which may hold several
// templates as YAML documents, and converts them for the API; errors name
// the file (and line).
func loadTemplates(path string, stdin io.Reader) ([]*coordinatorv1.TaskTemplate, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		if stdin == nil {
			return nil, errors.New("-: no stdin")
		}
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	ts, err := template.ParseAll(data)
	if err != nil {
		// FILE:LINE: FIELD: MESSAGE, the form editors jump to.
		var pe *template.ParseError
		if errors.As(err, &pe) {
			if pe.Line > 0 {
				return nil, fmt.Errorf("%s:%d: %s", path, pe.Line, pe.Detail())
			}
			return nil, fmt.Errorf("%s: %s", path, pe.Detail())
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]*coordinatorv1.TaskTemplate, len(ts))
	for i, t := range ts {
		if out[i], err = templatepb.ToProto(t); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return out, nil
}

func protoTemplateRef(t *coordinatorv1.TaskTemplate) string {
	return templateRef{namespace: t.GetNamespace(), name: t.GetName(), version: t.GetVersion()}.String()
}

func newTemplateGetCmd(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "get NAMESPACE/NAME[@VERSION]",
		Short: "Show a template; without a version, the highest registered",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			ref, err := parseTemplateRef(args[0])
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.GetTemplate(uctx, &coordinatorv1.GetTemplateRequest{
					Namespace: ref.namespace, Name: ref.name, Version: ref.version,
				})
				if err != nil {
					return err
				}
				return writeTemplate(g.env.Stdout, asJSON, resp.GetTemplate())
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newTemplateListCmd(g *globals) *cobra.Command {
	var (
		out       outputFlag
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered templates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.ListTemplates(uctx, &coordinatorv1.ListTemplatesRequest{Namespace: namespace})
				if err != nil {
					return err
				}
				w := g.env.Stdout
				if asJSON {
					for _, p := range resp.GetTemplates() {
						if err := writeTemplate(w, true, p); err != nil {
							return err
						}
					}
					return nil
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "TEMPLATE\tSTEPS\tDESCRIPTION")
				for _, p := range resp.GetTemplates() {
					fmt.Fprintf(tw, "%s\t%d\t%s\n", protoTemplateRef(p), len(p.GetSteps()), oneLine(p.GetDescription()))
				}
				return flush(tw)
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "", "only templates in this namespace")
	out.register(cmd)
	return cmd
}

// writeTemplate prints a template as one JSON line in the file form, or as
// a header and one line per step.
func writeTemplate(w io.Writer, asJSON bool, p *coordinatorv1.TaskTemplate) error {
	if asJSON {
		t, err := templatepb.FromProto(p)
		if err != nil {
			return err
		}
		return writeJSONLine(w, t)
	}
	fmt.Fprintf(w, "template %s", protoTemplateRef(p))
	if d := oneLine(p.GetDescription()); d != "" {
		fmt.Fprintf(w, "  %s", d)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tHANDLER\tDEPENDS_ON\tRETRY\tBACKOFF\tTIMEOUT\tCONFIG")
	for _, s := range p.GetSteps() {
		config := "-"
		if s.GetConfig() != nil {
			// encoding/json, not protojson, whose output spacing is
			// deliberately unstable.
			b, err := json.Marshal(s.GetConfig().AsMap())
			if err != nil {
				return fmt.Errorf("encode config of step %q: %w", s.GetName(), err)
			}
			config = string(b)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.GetName(), s.GetHandler(), orDash(strings.Join(s.GetDependsOn(), ",")),
			retryText(s), backoffText(s.GetBackoff()), durationText(s.GetTimeout()), config)
	}
	return flush(tw)
}

func retryText(s *coordinatorv1.StepTemplate) string {
	if s.Retryable != nil && !s.GetRetryable() {
		return "never"
	}
	if s.RetryLimit == nil {
		return "default"
	}
	return fmt.Sprintf("%d attempts", s.GetRetryLimit())
}

func backoffText(b *coordinatorv1.Backoff) string {
	if b == nil {
		return "-"
	}
	mult := "-"
	if b.GetMultiplier() != 0 {
		mult = fmt.Sprint(b.GetMultiplier())
	}
	return fmt.Sprintf("%s×%s≤%s", durationText(b.GetInitial()), mult, durationText(b.GetMax()))
}

func durationText(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
