/**
 * A min-heap of customers by the due time of their timer. Entries are never removed in place:
 * the caller checks, on pop, whether the customer's current timer is really due (lazy deletion
 * keeps every operation O(log n)).
 */
export interface QueuedTimer {
  readonly dueAtMs: number;
  readonly customerId: string;
}

export class TimerQueue {
  readonly #heap: QueuedTimer[] = [];

  get size(): number {
    return this.#heap.length;
  }

  push(timer: QueuedTimer): void {
    const heap = this.#heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      const c = heap[i];
      if (p === undefined || c === undefined || p.dueAtMs <= c.dueAtMs) break;
      heap[parent] = c;
      heap[i] = p;
      i = parent;
    }
  }

  peek(): QueuedTimer | undefined {
    return this.#heap[0];
  }

  pop(): QueuedTimer | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      const at = (k: number): number => heap[k]?.dueAtMs ?? Infinity;
      if (l < heap.length && at(l) < at(smallest)) smallest = l;
      if (r < heap.length && at(r) < at(smallest)) smallest = r;
      if (smallest === i) break;
      const a = heap[i];
      const b = heap[smallest];
      if (a === undefined || b === undefined) break;
      heap[i] = b;
      heap[smallest] = a;
      i = smallest;
    }
    return top;
  }

  /** Pops every timer due at or before `nowMs`, earliest first. */
  popDue(nowMs: number): QueuedTimer[] {
    const due: QueuedTimer[] = [];
    for (let top = this.peek(); top !== undefined && top.dueAtMs <= nowMs; top = this.peek()) {
      const popped = this.pop();
      if (popped !== undefined) due.push(popped);
    }
    return due;
  }
}
