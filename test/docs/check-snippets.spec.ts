import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../scripts/check-snippets.mjs');

/** Runs the checker on a scratch repository; resolves with its exit code and output. */
function check(root: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [SCRIPT, '--root', root, ...args], (error, stdout, stderr) => {
      done({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

const SOURCE = [
  "import { Module } from '@nestjs/common';",
  '',
  '// #region handler',
  'export function handler(): number {',
  '  // #region body',
  '  return 1;',
  '  // #endregion',
  '}',
  '// #endregion',
  '',
  '@Module({})',
  'export class AppModule {}',
  '',
].join('\n');

/** The whole file as a README shows it: region marker lines left out. */
const WHOLE = SOURCE.split('\n')
  .filter((line) => !line.includes('#region') && !line.includes('#endregion'))
  .join('\n')
  .trimEnd();

describe('scripts/check-snippets.mjs: README code blocks are copies of checked files', () => {
  let root: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'snippets-'));
    mkdirSync(join(root, 'docs/snippets'), { recursive: true });
    writeFileSync(join(root, 'docs/snippets/app.module.ts'), SOURCE);
  });

  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function readme(text: string, name = 'README.md'): void {
    writeFileSync(join(root, name), text);
  }

  it('passes whole files and regions (dedented), exempt blocks and blocks of other languages', async () => {
    readme(
      [
        '# App',
        '',
        '<!-- snippet: docs/snippets/app.module.ts -->',
        '',
        '```ts',
        WHOLE,
        '```',
        '',
        '- in a list:',
        '',
        '  <!-- snippet: docs/snippets/app.module.ts#body -->',
        '',
        '  ```typescript',
        '  return 1;',
        '  ```',
        '',
        '<!-- snippet: docs/snippets/app.module.ts#handler -->',
        '',
        '```ts',
        'export function handler(): number {',
        '  return 1;',
        '}',
        '```',
        '',
        '<!-- snippet-exempt: a signature, not a file -->',
        '',
        '```ts',
        'enqueue(name: string, data: unknown): Promise<JobInfo>',
        '```',
        '',
        '```bash',
        'npm install nestjs-job-streams',
        '```',
        '',
      ].join('\n'),
    );
    const result = await check(root);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('3 block(s) in 1 file(s) match their sources');
  });

  it('fails on a block that differs from its source, naming the file, line and the first differing line', async () => {
    const drifted = WHOLE.replace('export class AppModule {}', 'export class AppModule { extra = 1 }');
    readme(['# App', '', '<!-- snippet: docs/snippets/app.module.ts -->', '', '```ts', drifted, '```', ''].join('\n'));
    const result = await check(root);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('README.md:5: the block differs from docs/snippets/app.module.ts at its line 8');
    expect(result.stderr).toContain('"export class AppModule { extra = 1 }"');
    expect(result.stderr).toContain('"export class AppModule {}"');
  });

  it('fails on a block that lacks lines of its source (an import left out)', async () => {
    const withoutImport = WHOLE.split('\n').slice(2).join('\n');
    readme(['<!-- snippet: docs/snippets/app.module.ts -->', '', '```ts', withoutImport, '```', ''].join('\n'));
    const result = await check(root);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('README.md:3: the block differs from docs/snippets/app.module.ts at its line 1');
  });

  it('fails on a TypeScript block without a marker, in any Markdown file of the tree', async () => {
    mkdirSync(join(root, 'libs/lib'), { recursive: true });
    readme(['# Lib', '', '```ts', "import { JobQueue } from 'nestjs-job-streams';", '```', ''].join('\n'), 'libs/lib/README.md');
    const result = await check(root);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('libs/lib/README.md:3: a ```ts block without a source');
  });

  it('fails on a missing file or region, a marker that no block follows and a malformed marker', async () => {
    readme(
      [
        '<!-- snippet: docs/snippets/gone.ts -->',
        '',
        '```ts',
        'const a = 1;',
        '```',
        '',
        '<!-- snippet: docs/snippets/app.module.ts#nowhere -->',
        '',
        '```ts',
        'const b = 2;',
        '```',
        '',
        '<!-- snippet: docs/snippets/app.module.ts -->',
        '',
        'Some text in between.',
        '',
        '```bash',
        'echo',
        '```',
        '',
        '<!-- snippet docs/snippets/app.module.ts -->',
        '',
        '```ts',
        WHOLE,
        '```',
        '',
        '<!-- snippet: ../outside.ts -->',
        '',
        '```ts',
        'const c = 3;',
        '```',
        '',
      ].join('\n'),
    );
    const result = await check(root);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('README.md:3: docs/snippets/gone.ts does not exist');
    expect(result.stderr).toContain('README.md:9: docs/snippets/app.module.ts has no "// #region nowhere"');
    expect(result.stderr).toContain('README.md:13: <!-- snippet: docs/snippets/app.module.ts --> is not followed by a code block');
    expect(result.stderr).toContain('README.md:23: malformed marker');
    expect(result.stderr).toContain('README.md:36: ../outside.ts is not a path inside the repository');
  });

  it('--write copies the sources into drifted blocks; the check then passes', async () => {
    readme(
      ['# App', '', '<!-- snippet: docs/snippets/app.module.ts#handler -->', '', '```ts', 'old text', '```', '', 'End.', ''].join('\n'),
    );
    expect((await check(root, '--write')).code).toBe(0);
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toBe(
      [
        '# App',
        '',
        '<!-- snippet: docs/snippets/app.module.ts#handler -->',
        '',
        '```ts',
        'export function handler(): number {',
        '  return 1;',
        '}',
        '```',
        '',
        'End.',
        '',
      ].join('\n'),
    );
    expect((await check(root)).code).toBe(0);
  });
});
