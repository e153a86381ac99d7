import { sequenced } from '../nats/pub-ack.js';
import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StoredMsg,
} from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers, millis, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { ResourceNames } from '../contract/names.js';
import { ErrorCode, OrderFleetError } from '../errors.js';
import { DeadLetterHeader } from '../fleet/dead-letter.js';
import { openMetaBucket } from '../nats/deployment.js';
import { isMessageNotFound, isWrongLastSequence } from '../nats/errors.js';
import { readOrdered } from '../nats/ordered-read.js';
import { WatermarkStore } from '../state/watermark-store.js';
import {
  customerOfSubject,
  matches,
  type DeadLetter,
  type Selection,
} from './dead-letter-selection.js';

/** Header on a redriven message: which dead letter it came from (`<dlq stream>:<dlq seq>`). */
export const REDRIVE_OF_HEADER = 'Order-Fleet-Redrive-Of';

/**
 * A redrive record in the meta bucket, `dlq-redrive.<dlq seq>`. Written with a conditional
 * create *before* the publish (state `publishing`) and updated after it (`done`, with the new
 * sequence). Why a record and not only a message id: JetStream forgets a `Nats-Msg-Id` after
 * the stream's duplicate window (2 min by default), and the worker cannot recognise a redriven
 * event as a repeat (it dedupes by stream sequence, and a redrive is a new sequence). So:
 * - a second redrive of a `done` letter does nothing, however long after;
 * - two operators redriving at once: one create wins, the other sees `publishing`/`done`;
 * - a redrive interrupted between record and publish leaves `publishing`: the next redrive
 *   republishes with the same message id (deduplicated inside the window) or, once the window
 *   has passed, first looks on the source subject for a message carrying {@link REDRIVE_OF_HEADER}
 *   since the record's time, and republishes only if none is there.
 */
const RedriveRecord = z.object({
  state: z.enum(['publishing', 'done']),
  at: z.string(),
  /** Sequence of the redriven copy in the source stream, once done. */
  seq: z.number().int().optional(),
  subject: z.string(),
});
type RedriveRecord = z.infer<typeof RedriveRecord>;

const REDRIVE_KEY_PREFIX = 'dlq-redrive';
const redriveKey = (dlqSeq: number): string => `${REDRIVE_KEY_PREFIX}.${dlqSeq}`;

export type RedriveOutcome =
  | { readonly seq: number; readonly action: 'would-redrive'; readonly subject: string }
  | {
      readonly seq: number;
      readonly action: 'redriven';
      readonly subject: string;
      readonly newSeq: number;
    }
  | {
      readonly seq: number;
      readonly action: 'already-redriven';
      readonly subject: string;
      readonly newSeq: number | undefined;
    }
  | { readonly seq: number; readonly action: 'refused'; readonly why: string };

/** Operator tools over the dead-letter stream: list, show, redrive, purge. */
export class DeadLetterAdmin {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly meta: KV,
    private readonly names: ResourceNames,
  ) {}

  static async open(nc: NatsConnection, names: ResourceNames): Promise<DeadLetterAdmin> {
    return new DeadLetterAdmin(
      jetstream(nc),
      await jetstreamManager(nc),
      await openMetaBucket(nc, names),
      names,
    );
  }

  /** Every dead letter matching the selection, in dead-letter order. */
  async read(selection: Selection, opts: { headersOnly?: boolean } = {}): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    for await (const m of readOrdered(this.js, this.jsm, this.names.deadLetterStream, {
      ...(selection.fromSeq === undefined ? {} : { startSeq: selection.fromSeq }),
      ...(opts.headersOnly === true ? { headersOnly: true } : {}),
    })) {
      if (selection.toSeq !== undefined && m.seq > selection.toSeq) break;
      const letter = this.#fromJsMsg(m);
      if (matches(letter, selection)) out.push(letter);
    }
    return out;
  }

  async show(seq: number): Promise<DeadLetter> {
    let stored: StoredMsg | null;
    try {
      stored = await this.jsm.streams.getMessage(this.names.deadLetterStream, { seq });
    } catch (err) {
      if (!isMessageNotFound(err)) throw err;
      stored = null;
    }
    if (stored === null) {
      throw new OrderFleetError(
        ErrorCode.NotFound,
        `no dead letter with sequence ${seq} in ${this.names.deadLetterStream}`,
      );
    }
    return this.#letter(
      stored.seq,
      stored.time.getTime(),
      stored.subject,
      stored.header,
      stored.data,
    );
  }

  /** Sequences of dead letters already redriven (records in state `done`). */
  async redrivenSeqs(): Promise<Set<number>> {
    const out = new Set<number>();
    for await (const entry of await this.meta.history({ key: `${REDRIVE_KEY_PREFIX}.>` })) {
      if (entry.operation !== 'PUT') continue;
      const record = RedriveRecord.safeParse(entry.json());
      if (record.success && record.data.state === 'done')
        out.add(Number(entry.key.slice(REDRIVE_KEY_PREFIX.length + 1)));
    }
    return out;
  }

  /**
   * Puts each selected dead letter back on its source subject, byte for byte, in dead-letter
   * order (so one customer's events keep their order). Idempotent per dead letter, see
   * {@link RedriveRecord}. `onOutcome` reports each letter as it is handled.
   */
  async redrive(
    letters: readonly DeadLetter[],
    opts: { dryRun: boolean; onOutcome?: (o: RedriveOutcome) => void },
  ): Promise<RedriveOutcome[]> {
    const duplicateWindowMs = await this.#duplicateWindowMs(this.names.ordersStream);
    const out: RedriveOutcome[] = [];
    for (const letter of letters) {
      const outcome = await this.#redriveOne(letter, opts.dryRun, duplicateWindowMs);
      out.push(outcome);
      opts.onOutcome?.(outcome);
    }
    return out;
  }

  /** Deletes the selected dead letters (and their redrive records). Returns how many. */
  async purge(letters: readonly DeadLetter[]): Promise<number> {
    let purged = 0;
    for (const letter of letters) {
      if (await this.jsm.streams.deleteMessage(this.names.deadLetterStream, letter.seq, false))
        purged++;
      // A delete marker, not a purge: buckets refuse rollup headers, which a KV purge uses.
      await this.meta.delete(redriveKey(letter.seq));
    }
    return purged;
  }

  async #redriveOne(
    letter: DeadLetter,
    dryRun: boolean,
    duplicateWindowMs: number,
  ): Promise<RedriveOutcome> {
    const subject = letter.sourceSubject;
    const why = this.#refusal(letter);
    if (why !== undefined) return { seq: letter.seq, action: 'refused', why };
    const key = redriveKey(letter.seq);
    const existing = await this.#record(key);
    if (existing?.record.state === 'done') {
      return { seq: letter.seq, action: 'already-redriven', subject, newSeq: existing.record.seq };
    }
    if (dryRun) return { seq: letter.seq, action: 'would-redrive', subject };

    let revision: number;
    let since: string;
    if (existing === undefined) {
      since = new Date().toISOString();
      try {
        revision = await this.meta.create(
          key,
          JSON.stringify({ state: 'publishing', at: since, subject } satisfies RedriveRecord),
        );
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
        // Someone else is redriving this letter right now (or just did): theirs counts.
        const now = await this.#record(key);
        return {
          seq: letter.seq,
          action: 'already-redriven',
          subject,
          newSeq: now?.record.seq,
        };
      }
    } else {
      revision = existing.revision;
      since = existing.record.at;
      // An earlier redrive stopped after its record: did its publish land?
      if (Date.now() - Date.parse(since) > duplicateWindowMs / 2) {
        const landed = await this.#findRedriven(letter, since);
        if (landed !== undefined) {
          await this.#finish(key, revision, since, subject, landed);
          return { seq: letter.seq, action: 'already-redriven', subject, newSeq: landed };
        }
      }
    }
    // Before the copy exists: the original must never be applied as well (a rebuild, or a replay
    // under the raised limits, would find it valid now). Runners skip superseded entries.
    const partition = Number(letter.headers[DeadLetterHeader.Partition] ?? Number.NaN);
    if (
      letter.sourceStream === this.names.ordersStream &&
      letter.sourceSeq !== undefined &&
      Number.isInteger(partition)
    ) {
      await new WatermarkStore(this.meta).markSuperseded(partition, letter.sourceSeq, {
        deadLetterSeq: letter.seq,
      });
    }
    const h = headers();
    h.set(REDRIVE_OF_HEADER, `${this.names.deadLetterStream}:${letter.seq}`);
    const ack = sequenced(
      await this.js.publish(subject, letter.data, {
        msgID: `redrive-${this.names.deadLetterStream}-${letter.seq}`,
        headers: h,
        expect: { streamName: letter.sourceStream },
      }),
      `redrive of dead letter ${letter.seq}`,
    );
    await this.#finish(key, revision, since, subject, ack.seq);
    return ack.duplicate
      ? { seq: letter.seq, action: 'already-redriven', subject, newSeq: ack.seq }
      : { seq: letter.seq, action: 'redriven', subject, newSeq: ack.seq };
  }

  /** Only messages of this deployment's own streams go back, and only to their own subjects. */
  #refusal(letter: DeadLetter): string | undefined {
    const { ordersStream, notificationsStream, ordersPrefix, notificationsPrefix } = this.names;
    if (letter.sourceStream === ordersStream && letter.sourceSubject.startsWith(`${ordersPrefix}.`))
      return undefined;
    if (
      letter.sourceStream === notificationsStream &&
      letter.sourceSubject.startsWith(`${notificationsPrefix}.`)
    )
      return undefined;
    return `source ${letter.sourceStream} ${letter.sourceSubject} is not a stream of this deployment`;
  }

  async #finish(
    key: string,
    revision: number,
    at: string,
    subject: string,
    seq: number,
  ): Promise<void> {
    await this.meta.update(
      key,
      JSON.stringify({ state: 'done', at, seq, subject } satisfies RedriveRecord),
      revision,
    );
  }

  async #record(key: string): Promise<{ record: RedriveRecord; revision: number } | undefined> {
    const entry = await this.meta.get(key);
    if (entry === null || entry.operation !== 'PUT') return undefined;
    return { record: RedriveRecord.parse(entry.json()), revision: entry.revision };
  }

  /** Looks on the source subject, from `since`, for the copy of this letter. */
  async #findRedriven(letter: DeadLetter, since: string): Promise<number | undefined> {
    const marker = `${this.names.deadLetterStream}:${letter.seq}`;
    for await (const m of readOrdered(this.js, this.jsm, letter.sourceStream, {
      filter: letter.sourceSubject,
      startTime: since,
      headersOnly: true,
    })) {
      if (m.headers?.get(REDRIVE_OF_HEADER) === marker) return m.seq;
    }
    return undefined;
  }

  async #duplicateWindowMs(stream: string): Promise<number> {
    const info = await this.jsm.streams.info(stream);
    return millis(info.config.duplicate_window);
  }

  #fromJsMsg(m: JsMsg): DeadLetter {
    return this.#letter(
      m.seq,
      Math.floor(m.info.timestampNanos / 1e6),
      m.subject,
      m.headers,
      m.data,
    );
  }

  #letter(
    seq: number,
    timeMs: number,
    subject: string,
    h: MsgHdrs | undefined,
    data: Uint8Array,
  ): DeadLetter {
    const all: Record<string, string> = {};
    for (const k of h?.keys() ?? []) all[k] = (h?.values(k) ?? []).join(', ');
    const get = (name: string): string | undefined => {
      const v = h?.get(name) ?? '';
      return v === '' ? undefined : v;
    };
    const sourceSubject = get(DeadLetterHeader.SourceSubject) ?? '';
    const sourceSeq = get(DeadLetterHeader.SourceSeq);
    return {
      seq,
      timeMs,
      subject,
      reason: get(DeadLetterHeader.Reason) ?? 'UNKNOWN',
      detail: get(DeadLetterHeader.Detail) ?? '',
      rule: get(DeadLetterHeader.Rule),
      sourceStream: get(DeadLetterHeader.SourceStream) ?? '',
      sourceSubject,
      sourceSeq: sourceSeq === undefined ? undefined : Number(sourceSeq),
      sourceMsgId: get(DeadLetterHeader.SourceMsgId),
      customerId: customerOfSubject(this.names, sourceSubject),
      headers: all,
      data,
    };
  }
}
