/**
 * Many timers as one binary min-heap keyed by each item's next deadline, so finding the next
 * deadline is O(1) and a tick touches only the items that are due: with thousands of relay
 * clients, sessions or peers, walking all of them on every tick or event (as c-toxcore's
 * do_TCP_confirmed and do_net_crypto do) would cost more than the traffic. Items carry their
 * own heap index, so no search and no stale entries. Used by the relay server (connections),
 * net_crypto (sessions) and TCP_connections (peers).
 */

/** What DeadlineHeap keeps: the deadline and the slot the heap keeps it in (-1: not in it). */
export interface Timed {
  deadline: number;
  heapIndex: number;
}

/**
 * A binary min-heap of items by deadline, each knowing its own index, so moving or removing
 * one is O(log n) without a search, and the heap never holds stale entries.
 */
export class DeadlineHeap<T extends Timed> {
  readonly #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  /** Insert `t` at `deadline`, or move it there; Infinity takes it out. */
  set(t: T, deadline: number): void {
    if (deadline === Infinity) {
      this.remove(t);
      t.deadline = Infinity;
      return;
    }
    const earlier = deadline < t.deadline;
    t.deadline = deadline;
    if (t.heapIndex < 0) {
      t.heapIndex = this.#items.length;
      this.#items.push(t);
      this.#up(t.heapIndex);
    } else if (earlier) {
      this.#up(t.heapIndex);
    } else {
      this.#down(t.heapIndex);
    }
  }

  remove(t: T): void {
    const i = t.heapIndex;
    if (i < 0) return;
    t.heapIndex = -1;
    const last = this.#items.pop()!;
    if (last === t) return;
    this.#items[i] = last;
    last.heapIndex = i;
    this.#up(i);
    this.#down(last.heapIndex);
  }

  #up(i: number): void {
    const a = this.#items;
    const t = a[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p].deadline <= t.deadline) break;
      a[i] = a[p];
      a[i].heapIndex = i;
      i = p;
    }
    a[i] = t;
    t.heapIndex = i;
  }

  #down(i: number): void {
    const a = this.#items;
    const n = a.length;
    const t = a[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && a[r].deadline < a[l].deadline ? r : l;
      if (a[m].deadline >= t.deadline) break;
      a[i] = a[m];
      a[i].heapIndex = i;
      i = m;
    }
    a[i] = t;
    t.heapIndex = i;
  }
}
