import { describe, expect, it } from 'vitest';
import { renderTemplate, type TemplateData } from './command-template.js';

const data: TemplateData = {
  PlanFileName: '/p/plan.tfplan',
  WorkspaceName: '',
  Lock: true,
  Refresh: false,
  Targets: ['aws_s3_bucket.a', 'module.b'],
  None: [],
};

const fill = (template: string): string => {
  const result = renderTemplate(template, data);
  if ('error' in result) throw new Error(result.error);
  return result.text;
};

describe('renderTemplate', () => {
  it('fills values, with or without spaces and the dot', () => {
    expect(fill('tofu show -json "{{ .PlanFileName }}"')).toBe('tofu show -json "/p/plan.tfplan"');
    expect(fill('x {{.PlanFileName}} -lock={{ .Lock }}')).toBe('x /p/plan.tfplan -lock=true');
  });

  it('runs the plan template of the reference documentation', () => {
    expect(
      fill(
        "terraform plan -input=false -lock={{ .Lock }} {{ if not .Refresh }}-refresh=false {{ end }}-out={{ .PlanFileName }} {{ range .Targets }}-target='{{ . }}' {{ end }}",
      ),
    ).toBe(
      "terraform plan -input=false -lock=true -refresh=false -out=/p/plan.tfplan -target='aws_s3_bucket.a' -target='module.b' ",
    );
  });

  it('takes the else branch, treats empty strings and lists as false, and nests', () => {
    expect(fill('{{ if .WorkspaceName }}select{{ else }}default{{ end }}')).toBe('default');
    expect(fill('{{ if .None }}x{{ end }}{{ range .None }}y{{ end }}end')).toBe('end');
    expect(fill('{{ if .Lock }}{{ if not .Refresh }}a{{ else }}b{{ end }}{{ end }}')).toBe('a');
  });

  it('trims white space at {{- and -}}', () => {
    expect(fill('a   {{- .Lock -}}   b')).toBe('atrueb');
    expect(fill('{{ range .Targets -}}\n  -target={{ . }}\n{{- end }}')).toBe(
      '-target=aws_s3_bucket.a-target=module.b',
    );
  });

  it.each([
    [
      '{{ .Workspace }}',
      'is not a value berth knows; the values are .PlanFileName, .WorkspaceName',
    ],
    ['{{ printf "%s" .Lock }}', 'is not something berth fills'],
    ['{{ $x := 1 }}', 'is not something berth fills'],
    ['{{ .A.B }}', 'is not something berth fills'],
    ['{{ if .Lock }}x', 'has no {{ end }}'],
    ['x {{ end }}', 'closes nothing'],
    ['x {{ .Lock', 'an unclosed "{{"'],
    ['{{ range .Lock }}x{{ end }}', '.Lock is not a list'],
    ['{{ .Targets }}', 'is a list or the whole run'],
    ['{{ . }}', 'is a list or the whole run'],
  ])('refuses %s, saying why', (template, message) => {
    const result = renderTemplate(template, data);
    expect(result).toHaveProperty('error');
    expect((result as { error: string }).error).toContain(message);
  });
});
