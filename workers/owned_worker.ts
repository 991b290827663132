/**
 * A Worker as its owner holds it: messages are dropped once close has begun, and close asks
 * the Worker to finish (its "shutdown" event) before terminating it after a grace period, so
 * its sockets are closed by the code that opened them.
 */
export class OwnedWorker<In> {
  readonly #worker: Worker;
  #closed = false;
  #shutdown: (() => void) | null = null;

  constructor(
    url: URL,
    name: string,
    onMessage: (data: unknown) => void,
    onCrash: (message: string) => void,
  ) {
    this.#worker = new Worker(url, { type: "module", name });
    this.#worker.onmessage = (e: MessageEvent) => onMessage(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      onCrash(e.message);
    };
  }

  post(msg: In, transfer: ArrayBuffer[] = []): void {
    if (!this.#closed) this.#worker.postMessage(msg, transfer);
  }

  /** The Worker said it is done; call from onMessage when its shutdown event arrives. */
  shutdownSeen(): void {
    this.#shutdown?.();
  }

  /** Send `closeMsg`; terminate once the Worker has shut down or `graceMs` has passed. */
  async close(closeMsg: In, graceMs: number): Promise<void> {
    if (this.#closed) return;
    const done = new Promise<void>((resolve) => (this.#shutdown = resolve));
    this.post(closeMsg);
    this.#closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.#worker.terminate();
  }
}
