import type { ConfigService } from '@nestjs/config';

/** Injection token of {@link ApiSettings}. */
export const API_SETTINGS = Symbol('API_SETTINGS');

/** HTTP-level settings of the demo API, from the environment. */
export interface ApiSettings {
  /** SSE heartbeat interval (`SSE_HEARTBEAT_MS`, default 15000). */
  heartbeatMs: number;
  /** Time a client has to send a request's headers (`HTTP_HEADERS_TIMEOUT_MS`, default 10000). */
  headersTimeoutMs: number;
  /** Time a client has to send a whole request, body included (`HTTP_REQUEST_TIMEOUT_MS`, default 30000). */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open (`HTTP_KEEP_ALIVE_TIMEOUT_MS`, default 5000). */
  keepAliveTimeoutMs: number;
  /**
   * Origins whose pages may call the API from a browser (`CORS_ORIGINS`, comma-separated, e.g.
   * `https://app.example.com,http://localhost:5173`). Empty (unset): same origin only, no CORS headers.
   */
  corsOrigins: string[];
  /** How long a stream ticket stays valid (`STREAM_TICKET_TTL_MS`, default 300000: five minutes). */
  streamTicketTtlMs: number;
}

/** `scheme://host[:port]`, nothing after it: the form a browser sends in `Origin`. */
const ORIGIN = /^https?:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$/;

/** Reads `CORS_ORIGINS`; an entry that is not an origin stops start-up with a message naming it. */
function corsOrigins(config: ConfigService): string[] {
  const raw = config.get<string>('CORS_ORIGINS') ?? '';
  const origins = raw
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  for (const origin of origins) {
    if (!ORIGIN.test(origin)) {
      throw new Error(
        `CORS_ORIGINS must be a comma-separated list of origins like https://app.example.com (got ${JSON.stringify(origin)})`,
      );
    }
  }
  return origins;
}

function integerSetting(config: ConfigService, name: string, fallback: number, min: number, max: number): number {
  const raw = config.get<string>(name) ?? String(fallback);
  const value = Number(raw);
  if (!/^[0-9]+$/.test(raw) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max}`);
  return value;
}

/** Reads and checks the settings; a bad value stops start-up with a message naming the variable and its range. */
export function apiSettingsFromEnv(config: ConfigService): ApiSettings {
  const settings: ApiSettings = {
    heartbeatMs: integerSetting(config, 'SSE_HEARTBEAT_MS', 15_000, 100, 300_000),
    headersTimeoutMs: integerSetting(config, 'HTTP_HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
    requestTimeoutMs: integerSetting(config, 'HTTP_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
    keepAliveTimeoutMs: integerSetting(config, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 5_000, 100, 600_000),
    corsOrigins: corsOrigins(config),
    streamTicketTtlMs: integerSetting(config, 'STREAM_TICKET_TTL_MS', 300_000, 1000, 3_600_000),
  };
  if (settings.headersTimeoutMs > settings.requestTimeoutMs) {
    throw new Error('HTTP_HEADERS_TIMEOUT_MS must not be greater than HTTP_REQUEST_TIMEOUT_MS');
  }
  return settings;
}
