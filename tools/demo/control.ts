/**
 * Talking to a daemon over its control socket the way the demo needs it: connect once the socket
 * answers, requests that must succeed, and polling until the daemon has confirmed our relay.
 * Each is bounded (plan.ts) and stops on an abort; a failure is a StepError naming the daemon.
 */
import { ControlClient } from "../ctl.ts";
import { sleep } from "../testbed/processes.ts";
import { errText, StepError, throwIfAborted, within } from "./failure.ts";
import { LIMIT } from "./plan.ts";

/** A daemon's answer to `self`. */
export interface SelfInfo {
  address: string;
  public_key: string;
  dht_public_key: string;
  name: string;
}

/** Connects to a daemon's control socket once it answers (bounded). */
export async function connectWhenUp(
  path: string,
  name: string,
  signal: AbortSignal,
): Promise<ControlClient> {
  const end = performance.now() + LIMIT.daemonUp;
  while (true) {
    throwIfAborted(signal);
    try {
      return await ControlClient.connect(path);
    } catch (e) {
      if (performance.now() > end) {
        throw new StepError(
          `${name}'s control socket: not up within ${LIMIT.daemonUp} ms (${errText(e)})`,
        );
      }
    }
    await sleep(25, signal);
  }
}

/** A request that must succeed (`what` names it in errors; `cmd` by default). */
export async function request<T>(
  client: ControlClient,
  who: string,
  what: string,
  signal: AbortSignal,
  params = {},
  cmd = what,
): Promise<T> {
  const r = await within(
    client.request(cmd, params, { timeoutMs: LIMIT.request }),
    LIMIT.request + 500,
    `${who}: ${what}`,
    signal,
  );
  if (!r.ok) throw new StepError(`${who}: ${what}: ${r.error.code}: ${r.error.message}`);
  return r.result as T;
}

/** Polls `relays` until our relay is `confirmed`; the time (`now()`) it was seen so. */
export async function relayConfirmed(
  client: ControlClient,
  name: string,
  relay: { public_key: string },
  now: () => number,
  signal: AbortSignal,
): Promise<number> {
  const end = performance.now() + LIMIT.relayConfirmed;
  let last = "?";
  while (true) {
    const relays = await request<{ public_key: string; state: string }[]>(
      client,
      name,
      "relays",
      signal,
    );
    const ours = relays.find((r) => r.public_key === relay.public_key);
    last = ours?.state ?? "not listed";
    if (last === "confirmed") return now();
    if (performance.now() > end) {
      throw new StepError(
        `${name}: the relay is not confirmed within ${LIMIT.relayConfirmed} ms (state ${last})`,
      );
    }
    await sleep(25, signal);
    throwIfAborted(signal);
  }
}
