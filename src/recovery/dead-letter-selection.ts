import { ErrorCode, ValidationError } from '../errors.js';
import type { ResourceNames } from '../contract/names.js';

/** One dead letter as the operator tools see it (parsed from its headers; the body untouched). */
export interface DeadLetter {
  /** Sequence in the dead-letter stream: the dead letter's identity. */
  readonly seq: number;
  /** When it was filed (the dead-letter stream's timestamp), epoch ms. */
  readonly timeMs: number;
  readonly subject: string;
  readonly reason: string;
  readonly detail: string;
  readonly rule: string | undefined;
  readonly sourceStream: string;
  readonly sourceSubject: string;
  readonly sourceSeq: number | undefined;
  readonly sourceMsgId: string | undefined;
  /** The customer, read from the source subject (undefined when the subject has none). */
  readonly customerId: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly data: Uint8Array;
}

/** What an operator picks with `--reason`, `--seq` and `--customer` (all given must match). */
export interface Selection {
  readonly reasons: readonly string[];
  readonly fromSeq: number | undefined;
  readonly toSeq: number | undefined;
  readonly customers: readonly string[];
}

export const EVERYTHING: Selection = {
  reasons: [],
  fromSeq: undefined,
  toSeq: undefined,
  customers: [],
};

export function isEmptySelection(s: Selection): boolean {
  return (
    s.reasons.length === 0 &&
    s.fromSeq === undefined &&
    s.toSeq === undefined &&
    s.customers.length === 0
  );
}

/** Parses `N`, `N-M`, `N-` or `-M` (dead-letter stream sequences, inclusive). */
export function parseSeqRange(text: string): { fromSeq?: number; toSeq?: number } {
  const match = /^(\d*)(-?)(\d*)$/u.exec(text.trim());
  const [, from = '', dash = '', to = ''] = match ?? [];
  if (match === null || (from === '' && to === '') || (dash === '' && to !== '')) {
    throw new ValidationError(
      ErrorCode.InvalidSelection,
      `invalid sequence range ${JSON.stringify(text)}: use N, N-M, N- or -M`,
      'seq-range',
    );
  }
  const fromSeq = from === '' ? undefined : Number(from);
  const toSeq = dash === '' ? fromSeq : to === '' ? undefined : Number(to);
  if (fromSeq !== undefined && toSeq !== undefined && fromSeq > toSeq) {
    throw new ValidationError(
      ErrorCode.InvalidSelection,
      `invalid sequence range ${text}: start after end`,
      'seq-range',
    );
  }
  return {
    ...(fromSeq === undefined ? {} : { fromSeq }),
    ...(toSeq === undefined ? {} : { toSeq }),
  };
}

export function matches(letter: DeadLetter, s: Selection): boolean {
  if (s.reasons.length > 0 && !s.reasons.includes(letter.reason)) return false;
  if (s.fromSeq !== undefined && letter.seq < s.fromSeq) return false;
  if (s.toSeq !== undefined && letter.seq > s.toSeq) return false;
  if (
    s.customers.length > 0 &&
    (letter.customerId === undefined || !s.customers.includes(letter.customerId))
  )
    return false;
  return true;
}

/** The customer a source subject names: `<orders>.<p>.<id>[.kind]` or `<notifications>.<id>`. */
export function customerOfSubject(names: ResourceNames, subject: string): string | undefined {
  const orders = `${names.ordersPrefix}.`;
  if (subject.startsWith(orders)) {
    const id = subject.slice(orders.length).split('.')[1];
    return id === undefined || id === '' ? undefined : id;
  }
  const notifications = `${names.notificationsPrefix}.`;
  if (subject.startsWith(notifications)) {
    const id = subject.slice(notifications.length);
    return id === '' ? undefined : id;
  }
  return undefined;
}

export interface ReasonGroup {
  readonly reason: string;
  readonly count: number;
  /** How many of them were already redriven. */
  readonly redriven: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Distinct customers, at most {@link SAMPLE} of them (see `customerCount`). */
  readonly customers: readonly string[];
  readonly customerCount: number;
}

const SAMPLE = 10;

/** Groups dead letters by reason, most frequent first. */
export function groupByReason(
  letters: readonly DeadLetter[],
  redriven: ReadonlySet<number>,
): ReasonGroup[] {
  const groups = new Map<
    string,
    { count: number; redriven: number; first: DeadLetter; last: DeadLetter; customers: Set<string> }
  >();
  for (const letter of letters) {
    const g = groups.get(letter.reason);
    if (g === undefined) {
      groups.set(letter.reason, {
        count: 1,
        redriven: redriven.has(letter.seq) ? 1 : 0,
        first: letter,
        last: letter,
        customers: new Set(letter.customerId === undefined ? [] : [letter.customerId]),
      });
      continue;
    }
    g.count++;
    if (redriven.has(letter.seq)) g.redriven++;
    if (letter.seq < g.first.seq) g.first = letter;
    if (letter.seq > g.last.seq) g.last = letter;
    if (letter.customerId !== undefined) g.customers.add(letter.customerId);
  }
  return [...groups.entries()]
    .map(([reason, g]) => ({
      reason,
      count: g.count,
      redriven: g.redriven,
      firstSeen: new Date(g.first.timeMs).toISOString(),
      lastSeen: new Date(g.last.timeMs).toISOString(),
      firstSeq: g.first.seq,
      lastSeq: g.last.seq,
      customers: [...g.customers].sort().slice(0, SAMPLE),
      customerCount: g.customers.size,
    }))
    .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1));
}

/** A body shown to a person: the text when it is UTF-8, else hex. */
export function describeBody(data: Uint8Array): { encoding: 'utf8' | 'hex'; text: string } {
  try {
    return { encoding: 'utf8', text: new TextDecoder('utf-8', { fatal: true }).decode(data) };
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return { encoding: 'hex', text: Buffer.from(data).toString('hex') };
  }
}
