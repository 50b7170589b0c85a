import { timingSafeEqual } from 'node:crypto';

/** The caller every request is attributed to when no tokens are configured (development mode). */
export const ANONYMOUS_OWNER = 'anonymous';

/** Bearer tokens and the owner each stands for, from `AUTH_TOKENS=alice:tokenA,bob:tokenB`. */
export class AuthTokens {
  private constructor(private readonly entries: ReadonlyArray<{ owner: string; token: Buffer }>) {}

  /** `undefined` or empty: development mode. Malformed entries fail start with the entry's position, never its token. */
  static parse(value: string | undefined): AuthTokens | undefined {
    if (value === undefined || value.trim() === '') return undefined;
    const entries = value.split(',').map((entry, index) => {
      const separator = entry.indexOf(':');
      const owner = entry.slice(0, separator).trim();
      const token = entry.slice(separator + 1).trim();
      if (separator <= 0 || !owner || !token) {
        throw new Error(`AUTH_TOKENS entry ${index + 1} must look like owner:token (entries are separated by commas)`);
      }
      return { owner, token: Buffer.from(token) };
    });
    return new AuthTokens(entries);
  }

  /** Every `owner:token` entry, sorted: the same for every instance given the same tokens, whatever their order or spacing. */
  canonical(): string {
    return this.entries
      .map((entry) => `${entry.owner}:${entry.token.toString()}`)
      .sort()
      .join(',');
  }

  /** The owner of `token`, comparing in constant time so timing does not reveal tokens. */
  ownerOf(token: string): string | undefined {
    const candidate = Buffer.from(token);
    let found: string | undefined;
    for (const entry of this.entries) {
      if (entry.token.length === candidate.length && timingSafeEqual(entry.token, candidate)) found ??= entry.owner;
    }
    return found;
  }
}
