import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthTokens } from './auth-tokens.js';

/** What a stream ticket grants: reading the events of one job, as one owner, until it expires. */
export interface StreamTicketGrant {
  owner: string;
  /** The route collection (`builds`, `reports`). */
  resource: string;
  jobId: string;
  /** Epoch ms. */
  expiresAt: number;
}

const VERSION = 'v1';

function base64url(buffer: Buffer): string {
  return buffer.toString('base64url');
}

/**
 * Short-lived, read-only tickets for one job's event stream, for browsers' `EventSource` (which
 * cannot send an `Authorization` header): the long-lived bearer token then never rides in a URL,
 * where proxies log it. A ticket is signed (HMAC-SHA256) with a key every instance derives from
 * the same configuration, so any instance accepts a ticket another issued, without shared
 * session state. It names its owner, route collection, job and expiry; nothing else is accepted.
 */
export class StreamTickets {
  private constructor(
    private readonly key: Buffer,
    readonly ttlMs: number,
  ) {}

  /**
   * The key: `STREAM_TICKET_SECRET` when set, else derived (HKDF) from `AUTH_TOKENS`, which every
   * instance of a deployment shares; in development mode (no tokens) a random per-process key (no
   * route needs a ticket there).
   */
  static create(secret: string | undefined, authTokens: AuthTokens | undefined, ttlMs: number): StreamTickets {
    let key: Buffer;
    if (secret !== undefined && secret !== '') {
      if (secret.length < 32) throw new Error('STREAM_TICKET_SECRET must be at least 32 characters long');
      key = Buffer.from(secret);
    } else if (authTokens) {
      key = Buffer.from(hkdfSync('sha256', authTokens.canonical(), 'nestjs-job-streams', 'stream tickets v1', 32));
    } else {
      key = randomBytes(32);
    }
    return new StreamTickets(key, ttlMs);
  }

  issue(owner: string, resource: string, jobId: string, now = Date.now()): { ticket: string; expiresAt: number } {
    const grant: StreamTicketGrant = { owner, resource, jobId, expiresAt: now + this.ttlMs };
    const payload = base64url(Buffer.from(JSON.stringify([grant.owner, grant.resource, grant.jobId, grant.expiresAt])));
    return { ticket: `${VERSION}.${payload}.${this.sign(payload)}`, expiresAt: grant.expiresAt };
  }

  /** The owner a ticket grants reading `resource`/`jobId` to, or undefined (forged, expired, another job). */
  verify(ticket: string, resource: string, jobId: string, now = Date.now()): string | undefined {
    const [version, payload, signature, extra] = ticket.split('.');
    if (version !== VERSION || !payload || !signature || extra !== undefined) return undefined;
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    let fields: unknown;
    try {
      fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (!Array.isArray(fields) || fields.length !== 4) return undefined;
    const [owner, grantedResource, grantedJob, expiresAt] = fields as [unknown, unknown, unknown, unknown];
    if (typeof owner !== 'string' || typeof expiresAt !== 'number') return undefined;
    if (grantedResource !== resource || grantedJob !== jobId || now >= expiresAt) return undefined;
    return owner;
  }

  private sign(payload: string): string {
    return base64url(createHmac('sha256', this.key).update(`${VERSION}.${payload}`).digest());
  }
}
