// The module resolver of the run `bullmq-range.spec.ts` starts: Jest's own, except that it refuses
// the repository's installed bullmq. That run maps `bullmq` to another version; an import the
// mapping missed would otherwise load a second copy of bullmq beside it, silently.
import { realpathSync } from 'node:fs';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const refused = realpathSync(fileURLToPath(new URL('../../../node_modules/bullmq', import.meta.url))) + sep;

export default function resolve(request, options) {
  const resolved = options.defaultResolver(request, options);
  if (resolved.startsWith(refused)) {
    throw new Error(`"${request}" (from ${options.basedir}) resolved to the repository's bullmq, not the version this run maps bullmq to`);
  }
  return resolved;
}
