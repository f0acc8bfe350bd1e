/**
 * The one retry policy of the system (outbox relay, notification sends, payment charges):
 * full-jitter exponential backoff. Pure: the random source is a parameter, so tests fix it.
 */

/**
 * Delay before the next attempt after `failures` failures (≥ 1): full jitter, a uniform
 * random delay in [0, min(maxMs, baseMs·2^(failures-1))].
 */
export function retryDelayMs(
  failures: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, failures - 1);
  // 2^exponent overflows to Infinity for huge exponents; min() keeps the ceiling finite
  const ceiling = Math.min(maxMs, baseMs * 2 ** exponent);
  return Math.floor(random() * ceiling);
}
