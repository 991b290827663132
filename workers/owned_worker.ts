/**
 * A Worker as its owner holds it: messages are dropped once close has begun, and close asks
 * the Worker to finish (its "shutdown" event) before terminating it after a grace period, so
 * its sockets are closed by the code that opened them.
 */

/** How an owner talks to a Worker: directly (OwnedWorker) or over a port (PortChannel). */
export interface WorkerChannel<In> {
  post(msg: In, transfer?: Transferable[]): void;
  /** The Worker said it is done; call from onMessage when its shutdown event arrives. */
  shutdownSeen(): void;
  /** Send `closeMsg`; finish once the Worker has shut down or `graceMs` has passed. */
  close(closeMsg: In, graceMs: number): Promise<void>;
}

/** Resolves when `shutdownSeen` is called or after `graceMs`, whichever is first. */
class ShutdownWait {
  #seen = false;
  #resolve: (() => void) | null = null;

  seen(): void {
    this.#seen = true;
    this.#resolve?.();
  }

  async wait(graceMs: number): Promise<void> {
    if (this.#seen) return;
    const done = new Promise<void>((resolve) => (this.#resolve = resolve));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }
}

/** Post until closed; close asks for shutdown, waits for it (or the grace), then finishes. */
abstract class ClosingChannel<In> implements WorkerChannel<In> {
  #closed = false;
  readonly #shutdown = new ShutdownWait();

  /** Deliver one message (only called while open). */
  protected abstract send(msg: In, transfer: Transferable[]): void;
  /** Let the Worker go, after its shutdown or the grace period. */
  protected abstract finish(): void;

  post(msg: In, transfer: Transferable[] = []): void {
    if (!this.#closed) this.send(msg, transfer);
  }

  shutdownSeen(): void {
    this.#shutdown.seen();
  }

  async close(closeMsg: In, graceMs: number): Promise<void> {
    if (this.#closed) return;
    const done = this.#shutdown.wait(graceMs);
    this.post(closeMsg);
    this.#closed = true;
    await done;
    this.finish();
  }

  /** Nothing more will be posted (the Worker is gone or going). */
  protected stopPosting(): void {
    this.#closed = true;
  }
}

export class OwnedWorker<In> extends ClosingChannel<In> {
  readonly #worker: Worker;

  constructor(
    url: URL,
    name: string,
    onMessage: (data: unknown) => void,
    onCrash: (message: string) => void,
  ) {
    super();
    this.#worker = new Worker(url, { type: "module", name });
    this.#worker.onmessage = (e: MessageEvent) => onMessage(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      onCrash(e.message);
    };
  }

  protected send(msg: In, transfer: Transferable[]): void {
    this.#worker.postMessage(msg, transfer);
  }

  protected finish(): void {
    this.#worker.terminate();
  }

  /** Stop the Worker now, without asking. */
  terminate(): void {
    this.stopPosting();
    this.#worker.terminate();
  }
}

/**
 * A Worker someone else spawned and handed us one end of a MessageChannel to: commands go
 * down the port, events come up it. Close waits for the Worker's shutdown, then closes the
 * port and calls `release`, which asks the spawner to terminate the Worker.
 */
export class PortChannel<In> extends ClosingChannel<In> {
  readonly #port: MessagePort;
  readonly #release: () => void;
  #dead = false;

  constructor(port: MessagePort, onMessage: (data: unknown) => void, release: () => void) {
    super();
    this.#port = port;
    this.#release = release;
    port.onmessage = (e: MessageEvent) => onMessage(e.data);
  }

  protected send(msg: In, transfer: Transferable[]): void {
    if (!this.#dead) this.#port.postMessage(msg, transfer);
  }

  protected finish(): void {
    this.#port.close();
    this.#release();
  }

  /** The Worker died under us: no shutdown will come; close will not wait for one. */
  died(): void {
    this.#dead = true;
    this.shutdownSeen();
  }
}
