import { existsSync, readFileSync } from 'node:fs';
import { Controller, Get, Header } from '@nestjs/common';
import { Public } from './auth/public.decorator.js';

/** The folder of the page's files: next to the built app (`dist/apps/api/public`), or in the sources when run from them. */
function publicFolder(): URL {
  const built = new URL('./public/', import.meta.url);
  return existsSync(built) ? built : new URL('../public/', import.meta.url);
}

const SECURITY_HEADERS: Array<[string, string]> = [
  // Only this origin's script and API; the inline styles of the page.
  ['Content-Security-Policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
  ['Cache-Control', 'no-cache'],
];

/**
 * The demo's live page at `/`: start a build or a report, watch its events arrive (EventSource,
 * resuming with `Last-Event-ID`), see its state, cancel it. Plain HTML and one script, no build
 * step. The page itself needs no token; what it does with the API does.
 */
@Controller()
@Public()
export class LivePageController {
  private readonly html: string;
  private readonly script: string;

  constructor() {
    const folder = publicFolder();
    this.html = readFileSync(new URL('index.html', folder), 'utf8');
    this.script = readFileSync(new URL('live.js', folder), 'utf8');
  }

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header(...SECURITY_HEADERS[0])
  @Header(...SECURITY_HEADERS[1])
  @Header(...SECURITY_HEADERS[2])
  @Header(...SECURITY_HEADERS[3])
  page(): string {
    return this.html;
  }

  @Get('live.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header(...SECURITY_HEADERS[1])
  @Header(...SECURITY_HEADERS[3])
  liveScript(): string {
    return this.script;
  }
}
