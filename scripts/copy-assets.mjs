// Copies the demo api's static files (its live page) next to the built app: dist/apps/api/public.
import { cpSync } from 'node:fs';

cpSync(new URL('../apps/api/public', import.meta.url), new URL('../dist/apps/api/public', import.meta.url), { recursive: true });
