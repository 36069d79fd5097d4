import { maskAll } from './log-masker.js';
import { describe, expect, it } from 'vitest';
import {
  PLAN_FILE,
  fillTemplate,
  programOf,
  splitPhaseVariables,
  summarisePlan,
  PLAN_SUMMARY_LIMITS,
  toolCommands,
  workflowPhases,
} from './workflow.js';

describe('workflowPhases', () => {
  it('plans proposed, tracked and destroy runs with their hooks', () => {
    const settings = {
      before_init: ['echo bi'],
      after_plan: ['echo ap'],
      before_apply: ['echo ba'],
      after_destroy: ['echo ad'],
    };
    const proposed = workflowPhases('proposed', toolCommands('tofu'), settings);
    expect(proposed.first.map((p) => [p.name, p.state])).toEqual([
      ['init', 'INITIALIZING'],
      ['plan', 'PLANNING'],
    ]);
    expect(proposed.first[0]?.script).toBe('{\necho bi\n} &&\n{\ntofu init -input=false\n}\n');
    expect(proposed.first[1]?.script).toContain(
      `tofu plan -input=false -out=${PLAN_FILE} && tofu show -json ${PLAN_FILE}`,
    );
    expect(proposed.first[1]?.script).toContain('{\necho ap\n}');
    expect(proposed.apply).toEqual([]);
    const tracked = workflowPhases('tracked', toolCommands('terraform'), settings);
    expect(tracked.apply[0]?.script).toBe(
      `{\necho ba\n} &&\n{\nterraform apply -input=false ${PLAN_FILE}\n}\n`,
    );
    expect(
      workflowPhases('destroy', toolCommands('tofu'), settings).first.map((p) => p.state),
    ).toEqual(['INITIALIZING', 'DESTROYING']);
  });
});

describe('summarisePlan', () => {
  it('counts what the plan adds, changes, destroys and replaces', () => {
    const plan = {
      resource_changes: [
        { address: 'a.new', change: { actions: ['create'] } },
        { address: 'b.mod', change: { actions: ['update'] } },
        { address: 'c.old', change: { actions: ['delete'] } },
        { address: 'd.swap', change: { actions: ['delete', 'create'] } },
        { address: 'e.same', change: { actions: ['no-op'] } },
        { address: 'f.data', change: { actions: ['read'] } },
      ],
    };
    expect(summarisePlan(JSON.stringify(plan))).toEqual({
      add: 2,
      change: 1,
      destroy: 2,
      replace: 1,
      resources: [
        { address: 'a.new', actions: ['create'] },
        { address: 'b.mod', actions: ['update'] },
        { address: 'c.old', actions: ['delete'] },
        { address: 'd.swap', actions: ['delete', 'create'] },
      ],
      resourcesNotShown: 0,
    });
  });

  it('masks secrets in addresses before shortening them, and bounds what it lists', () => {
    const secret = 's3cret-key';
    const long = `x.y["${'k'.repeat(PLAN_SUMMARY_LIMITS.addressChars - 10)}${secret}"]`;
    const many = Array.from({ length: PLAN_SUMMARY_LIMITS.resources + 5 }, (_, i) => ({
      address: `r.n${i}`,
      change: { actions: ['update'] },
    }));
    const plan = {
      resource_changes: [
        { address: `aws_iam_user.u["${secret}"]`, change: { actions: ['create'] } },
        { address: long, change: { actions: ['create'] } },
        ...many,
      ],
    };
    const summary = summarisePlan(JSON.stringify(plan), (t) => maskAll(t, [secret]));
    expect(JSON.stringify(summary)).not.toContain('s3cret');
    expect(JSON.stringify(summary)).not.toContain('s3c');
    expect(summary?.resources[0]?.address).toBe('aws_iam_user.u["*****"]');
    expect(summary?.resources[1]?.address).toHaveLength(PLAN_SUMMARY_LIMITS.addressChars);
    expect(summary?.resources).toHaveLength(PLAN_SUMMARY_LIMITS.resources);
    expect(summary?.resourcesNotShown).toBe(7);
    expect(summary?.change).toBe(PLAN_SUMMARY_LIMITS.resources + 5);
  });

  it('takes only what has the plan format from a hostile file', () => {
    const plan = {
      resource_changes: [
        null,
        7,
        { address: 5, change: { actions: ['create', 'rm -rf', 3] } },
        { address: 'a.b', change: null },
      ],
    };
    expect(summarisePlan(JSON.stringify(plan))).toEqual({
      add: 1,
      change: 0,
      destroy: 0,
      replace: 0,
      resources: [{ address: '?', actions: ['create'] }],
      resourcesNotShown: 0,
    });
    expect(summarisePlan('{"resource_changes": 5}')?.resources).toEqual([]);
    expect(summarisePlan('{"resource_changes": "abc"}')?.add).toBe(0);
  });
  it('returns null for what is not JSON', () => {
    expect(summarisePlan('nope')).toBeNull();
    expect(summarisePlan('{}')).toEqual({
      add: 0,
      change: 0,
      destroy: 0,
      replace: 0,
      resources: [],
      resourcesNotShown: 0,
    });
  });
});

describe('splitPhaseVariables', () => {
  it('gives ro_ variables to read phases only and wo_ variables to write phases only', () => {
    const split = splitPhaseVariables({ A: '1', ro_R: 'r', wo_W: 'w' });
    expect(split.common).toEqual({ A: '1' });
    expect(split.forPhase('init')).toEqual({ ro_R: 'r', BERTH_PHASE_ONLY: 'ro_R' });
    expect(split.forPhase('plan')).toEqual({ ro_R: 'r', BERTH_PHASE_ONLY: 'ro_R' });
    expect(split.forPhase('apply')).toEqual({ wo_W: 'w', BERTH_PHASE_ONLY: 'wo_W' });
    expect(split.forPhase('destroy')).toEqual({ wo_W: 'w', BERTH_PHASE_ONLY: 'wo_W' });
    expect(split.forPhase('task')).toEqual({ wo_W: 'w', BERTH_PHASE_ONLY: 'wo_W' });
    expect(splitPhaseVariables({ A: '1' }).forPhase('plan')).toEqual({});
  });
});

describe('custom workflow templates', () => {
  it("fills the reference's template values and refuses what it cannot fill", () => {
    expect(fillTemplate('pulumi preview --save-plan "{{ .PlanFileName }}"')).toEqual({
      command: `pulumi preview --save-plan "${PLAN_FILE}"`,
    });
    expect(
      fillTemplate(
        'tofu plan -lock={{ .Lock }} {{ if not .Refresh }}-refresh=false {{ end }}-out={{ .PlanFileName }} {{ range .Targets }}-target={{ . }} {{ end }}',
      ),
    ).toEqual({ command: `tofu plan -lock=true -out=${PLAN_FILE} ` });
    expect(fillTemplate('x {{ .Colour }}')).toEqual({
      error: expect.stringContaining('{{ .Colour }} is not a value berth knows') as string,
    });
  });
  it('finds the program a command needs', () => {
    expect(programOf('  terragrunt plan -out=x')).toBe('terragrunt');
  });
});
