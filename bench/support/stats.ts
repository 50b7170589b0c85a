/** The q-quantile (0..1) of `values` (sorted in place), by nearest rank. */
export function quantile(values: number[], q: number): number {
  if (!values.length) return NaN;
  values.sort((a, b) => a - b);
  const rank = Math.min(values.length - 1, Math.max(0, Math.ceil(q * values.length) - 1));
  return values[rank];
}

export function median(values: number[]): number {
  return quantile([...values], 0.5);
}

/** Rounds to `digits` significant digits (JSON stays readable, noise is not reported). */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const scale = 10 ** (digits - 1 - Math.floor(Math.log10(Math.abs(value))));
  return Math.round(value * scale) / scale;
}
