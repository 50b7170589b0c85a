/** Injection token of {@link ApiSettings}. */
export const API_SETTINGS = Symbol('API_SETTINGS');

/** HTTP-level settings of the demo API, from the environment. */
export interface ApiSettings {
  /** SSE heartbeat interval (`SSE_HEARTBEAT_MS`, default 15000). */
  heartbeatMs: number;
}
