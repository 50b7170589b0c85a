// Keeps the code blocks of the Markdown docs copies of files that the lint type-checks, so that
// what a reader pastes compiles as written and cannot drift from the code.
//
// A block is tied to its source by an HTML comment on the last non-blank line before its fence:
//
//   <!-- snippet: docs/snippets/own-app/app.module.ts -->           the whole file
//   <!-- snippet: docs/snippets/own-app/app.module.ts#handler -->   the lines between `// #region handler`
//                                                                   and its `// #endregion`, dedented
//
// Paths are relative to the repository root. Region marker lines never appear in a block. Every
// TypeScript block (ts, typescript, tsx, mts, cts) must have such a marker, or an exemption that
// says why it is no file to paste (a one-line signature, say): `<!-- snippet-exempt: <reason> -->`.
// Blocks of other languages are checked when they have a marker.
//
// Usage: node scripts/check-snippets.mjs [--write] [--root <dir>] [<file.md> ...]
//   (no files: every Markdown file under the root, outside node_modules, dist and the like)
//   --write  replaces each marked block that differs with its source, instead of failing on it.
// Exits 1 and names file, line and the first differing line when a block and its source differ.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPESCRIPT = new Set(['ts', 'typescript', 'tsx', 'mts', 'cts']);
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', 'coverage', '.test-tmp', 'results', '.tmp']);
const MARKER = /^<!--\s*snippet:\s*([^\s#]+)(?:#([\w.-]+))?\s*-->$/;
const EXEMPT = /^<!--\s*snippet-exempt:\s*(\S.*?)\s*-->$/;
const LOOKS_LIKE_MARKER = /^<!--\s*snippet/;
const REGION_START = /^\s*\/\/\s*#region\b\s*(\S*)/;
const REGION_END = /^\s*\/\/\s*#endregion\b/;

function parseArgs(argv) {
  const options = { write: false, root: resolve(dirname(fileURLToPath(import.meta.url)), '..'), files: [] };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === '--write') options.write = true;
    else if (arg === '--root') options.root = resolve(argv[++index] ?? '');
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else options.files.push(arg);
  }
  return options;
}

/** Every Markdown file under `dir`, outside build output, dependencies and test scratch. */
function markdownFiles(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) found.push(...markdownFiles(join(dir, entry.name)));
    } else if (entry.isFile() && entry.name.endsWith('.md')) {
      found.push(join(dir, entry.name));
    }
  }
  return found.sort();
}

/**
 * The fenced code blocks of a Markdown text: for each, the 0-based line indexes of its opening and
 * closing fence, its language, its indentation and its content (without that indentation).
 */
function codeBlocks(lines) {
  const blocks = [];
  for (let index = 0; index < lines.length; index++) {
    const open = /^( *)(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[index]);
    if (!open) continue;
    const [, indent, fence, language] = open;
    const close = new RegExp(`^ *${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
    let end = index + 1;
    while (end < lines.length && !close.test(lines[end])) end++;
    const content = lines.slice(index + 1, end).map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line.trimStart()));
    blocks.push({ start: index, end, language: language.toLowerCase(), indent, content });
    index = end;
  }
  return blocks;
}

/** The last non-blank line before line `index`, trimmed, and its index (-1 when none). */
function previousNonBlank(lines, index) {
  for (let at = index - 1; at >= 0; at--) if (lines[at].trim() !== '') return { text: lines[at].trim(), at };
  return { text: '', at: -1 };
}

/** Removes the common leading whitespace of the non-blank lines. */
function dedent(lines) {
  const widths = lines.filter((line) => line.trim() !== '').map((line) => /^\s*/.exec(line)[0].length);
  const width = widths.length ? Math.min(...widths) : 0;
  return lines.map((line) => line.slice(Math.min(width, /^\s*/.exec(line)[0].length)));
}

/** The lines a marker names: the whole file or one region, without region marker lines. */
function sourceLines(root, path, region) {
  const file = resolve(root, path);
  const inside = relative(root, file);
  if (isAbsolute(path) || inside.startsWith(`..${sep}`) || inside === '..') throw new Error(`${path} is not a path inside the repository`);
  if (!existsSync(file) || !statSync(file).isFile()) throw new Error(`${path} does not exist`);
  let lines = readFileSync(file, 'utf8').replace(/\r\n/g, '\n').split('\n');
  if (region !== undefined) {
    const start = lines.findIndex((line) => REGION_START.exec(line)?.[1] === region);
    if (start < 0) throw new Error(`${path} has no "// #region ${region}"`);
    let depth = 0;
    let end = start + 1;
    for (; end < lines.length; end++) {
      if (REGION_START.test(lines[end])) depth++;
      else if (REGION_END.test(lines[end]) && depth-- === 0) break;
    }
    if (end >= lines.length) throw new Error(`${path}: "// #region ${region}" has no "// #endregion"`);
    lines = dedent(lines.slice(start + 1, end));
  }
  return trimBlankEnds(lines.filter((line) => !REGION_START.test(line) && !REGION_END.test(line)).map((line) => line.trimEnd()));
}

function trimBlankEnds(lines) {
  let start = 0;
  let end = lines.length;
  while (start < end && lines[start].trim() === '') start++;
  while (end > start && lines[end - 1].trim() === '') end--;
  return lines.slice(start, end);
}

/**
 * Checks one Markdown file; returns its problems (as `file:line: message`), the number of blocks
 * it compared, and with `write` the text with drifted blocks replaced (undefined when unchanged).
 */
function checkMarkdown(root, mdPath, write) {
  const text = readFileSync(mdPath, 'utf8');
  const lines = text.split('\n');
  const name = relative(root, mdPath) || mdPath;
  const problems = [];
  const blocks = codeBlocks(lines);
  const replacements = [];
  let compared = 0;
  const markersUsed = new Set();

  for (const block of blocks) {
    const before = previousNonBlank(lines, block.start);
    const where = `${name}:${block.start + 1}`;
    const marker = MARKER.exec(before.text);
    if (marker) markersUsed.add(before.at);
    if (!marker) {
      if (LOOKS_LIKE_MARKER.test(before.text) && !EXEMPT.test(before.text)) {
        problems.push(`${where}: malformed marker ${before.text} (expected <!-- snippet: <path>[#<region>] -->)`);
      } else if (TYPESCRIPT.has(block.language) && !EXEMPT.test(before.text)) {
        problems.push(
          `${where}: a \`\`\`${block.language} block without a source: put it in a file the lint type-checks (docs/snippets/) and ` +
            'mark it with <!-- snippet: <path> --> on the line before, or say why it is none with <!-- snippet-exempt: <reason> -->',
        );
      }
      continue;
    }
    const [, path, region] = marker;
    const label = region === undefined ? path : `${path}#${region}`;
    let expected;
    try {
      expected = sourceLines(root, path, region);
    } catch (error) {
      problems.push(`${where}: ${error.message}`);
      continue;
    }
    compared++;
    const actual = trimBlankEnds(block.content.map((line) => line.trimEnd()));
    const differsAt = firstDifference(actual, expected);
    if (differsAt < 0) continue;
    if (write) {
      replacements.push({ block, lines: expected });
      continue;
    }
    problems.push(
      `${where}: the block differs from ${label} at its line ${differsAt + 1}\n` +
        `    block:  ${JSON.stringify(actual[differsAt] ?? '(end of block)')}\n` +
        `    source: ${JSON.stringify(expected[differsAt] ?? '(end of source)')}\n` +
        `  change ${label} rather than the block, then copy it into the block: node scripts/check-snippets.mjs --write`,
    );
  }

  // A marker that no block follows points at nothing: most likely text slipped in between.
  lines.forEach((line, index) => {
    if (MARKER.test(line.trim()) && !markersUsed.has(index)) {
      problems.push(`${name}:${index + 1}: ${line.trim()} is not followed by a code block`);
    }
  });

  let rewritten;
  if (replacements.length) {
    const out = [...lines];
    for (const { block, lines: source } of replacements.reverse()) {
      const body = source.map((line) => (line === '' ? '' : `${block.indent}${line}`));
      out.splice(block.start + 1, block.end - block.start - 1, ...body);
    }
    rewritten = out.join('\n');
  }
  return { problems, compared, rewritten, replaced: replacements.length };
}

function firstDifference(actual, expected) {
  const length = Math.max(actual.length, expected.length);
  for (let index = 0; index < length; index++) if (actual[index] !== expected[index]) return index;
  return -1;
}

function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`check-snippets: ${error.message}`);
    return 2;
  }
  const files = options.files.length ? options.files.map((file) => resolve(options.root, file)) : markdownFiles(options.root);
  const problems = [];
  let compared = 0;
  for (const file of files) {
    const result = checkMarkdown(options.root, file, options.write);
    problems.push(...result.problems);
    compared += result.compared;
    if (result.rewritten !== undefined) {
      writeFileSync(file, result.rewritten);
      console.log(`check-snippets: ${relative(options.root, file)}: ${result.replaced} block(s) replaced by their source`);
    }
  }
  if (problems.length) {
    console.error(`check-snippets: ${problems.length} problem(s)\n${problems.join('\n')}`);
    return 1;
  }
  console.log(`check-snippets: ${compared} block(s) in ${files.length} file(s) match their sources`);
  return 0;
}

process.exitCode = main();
