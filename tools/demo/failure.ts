/**
 * How a demo step ends early: a StepError (the step failed; its message is printed), or
 * Interrupted (Ctrl-C / SIGTERM, carried as the abort reason). `within` bounds any promise and
 * stops at once on an abort, so no wait of the demo can hang.
 */

export class Interrupted extends Error {
  override readonly name = "Interrupted";
  constructor(readonly signal: Deno.Signal) {
    super(`interrupted (${signal})`);
  }
}

export class StepError extends Error {
  override readonly name = "StepError";
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason;
}

/** `p` within `ms`, or a StepError naming `what`; an abort rejects with its reason at once. */
export function within<T>(
  p: Promise<T>,
  ms: number,
  what: string,
  signal: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => finish(() => reject(signal.reason));
    const timer = setTimeout(
      () => finish(() => reject(new StepError(`${what}: not within ${ms} ms`))),
      ms,
    );
    let settled = false;
    function finish(f: () => void) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      f();
    }
    signal.addEventListener("abort", onAbort, { once: true });
    p.then((v) => finish(() => resolve(v)), (e) => finish(() => reject(e)));
  });
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
