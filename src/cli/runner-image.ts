/** `berth runner-image build [--tag latest|future]`: build the standard runner image here. */
import type { Command } from 'commander';
import { BerthError } from '../domain/errors.js';
import { EngineClient } from '../executor/docker/engine-client.js';
import { RUNNER_TAGS, buildRunnerImage, readSettings, withTag } from '../launcher/runner-image.js';
import type { Output } from './render.js';

export function registerRunnerImage(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  setExit: (code: number) => void,
): void {
  const group = program.command('runner-image').description("berth's standard runner image");
  group
    .command('build')
    .description('build the standard runner image from the bundled runner/Dockerfile')
    .option('--tag <tag>', `${RUNNER_TAGS.join(' | ')}`, 'latest')
    .action(async (opts: { tag: string }) => {
      if (!(RUNNER_TAGS as readonly string[]).includes(opts.tag)) {
        throw new BerthError(
          'BERTH_USAGE',
          `--tag ${JSON.stringify(opts.tag)}: use one of ${RUNNER_TAGS.join(', ')}`,
        );
      }
      const reference = withTag(readSettings(env).defaultRunnerImage, opts.tag);
      const engine = EngineClient.fromEnv(env);
      try {
        io.stderr.write(`berth: building ${reference} from the bundled runner/Dockerfile\n`);
        const image = await buildRunnerImage(engine, reference, (line) =>
          io.stderr.write(`berth: build: ${line}\n`),
        );
        io.stdout.write(`${reference} ${image.id}\n`);
        setExit(0);
      } finally {
        engine.close();
      }
    });
}
