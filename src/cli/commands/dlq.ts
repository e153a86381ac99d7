import type { Command } from 'commander';
import { ErrorCode, OrderFleetError, ValidationError } from '../../errors.js';
import { DeadLetterAdmin, type RedriveOutcome } from '../../recovery/dead-letter-admin.js';
import {
  describeBody,
  groupByReason,
  isEmptySelection,
  parseSeqRange,
  type DeadLetter,
  type Selection,
} from '../../recovery/dead-letter-selection.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

interface SelectionFlags {
  reason: string[];
  customer: string[];
  seq?: string;
  all?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function withSelection(cmd: Command): Command {
  return cmd
    .option('--reason <code>', 'only dead letters with this reason (repeatable)', collect, [])
    .option('--customer <id>', "only this customer's dead letters (repeatable)", collect, [])
    .option('--seq <range>', 'only dead-letter sequences N, N-M, N- or -M');
}

function selectionOf(flags: SelectionFlags): Selection {
  const range = flags.seq === undefined ? {} : parseSeqRange(flags.seq);
  return {
    reasons: flags.reason,
    customers: flags.customer,
    fromSeq: range.fromSeq,
    toSeq: range.toSeq,
  };
}

/** Redrive and purge act on everything only when asked to in so many words. */
function requireSelection(selection: Selection, flags: SelectionFlags, verb: string): void {
  if (isEmptySelection(selection) && flags.all !== true) {
    throw new ValidationError(
      ErrorCode.InvalidSelection,
      `${verb} needs a selection (--reason, --customer, --seq) or --all`,
      'selection',
    );
  }
}

export function registerDlq(program: Command, env: NodeJS.ProcessEnv): void {
  const dlq = program
    .command('dlq')
    .description('dead letters: list by reason, show one, redrive a selection, purge');

  withSelection(dlq.command('list'))
    .description('dead letters grouped by reason: counts, first and last seen, customers')
    .option('--json', 'print JSON')
    .action(async (opts: SelectionFlags & { json?: boolean }, cmd: Command) => {
      const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
      const selection = selectionOf(opts);
      const { letters, redriven } = await withConnection(ctx, 'order-fleet-dlq', async (nc) => {
        const admin = await DeadLetterAdmin.open(nc, ctx.names);
        return {
          letters: await admin.read(selection, { headersOnly: true }),
          redriven: await admin.redrivenSeqs(),
        };
      });
      const reasons = groupByReason(letters, redriven);
      const total = letters.length;
      const redrivenCount = letters.filter((l) => redriven.has(l.seq)).length;
      if (opts.json === true) {
        process.stdout.write(
          `${JSON.stringify({ stream: ctx.names.deadLetterStream, total, redriven: redrivenCount, reasons })}\n`,
        );
        return;
      }
      const lines = [
        `${'REASON'.padEnd(22)} ${'COUNT'.padStart(6)} ${'REDRIVEN'.padStart(8)}  ${'FIRST SEEN'.padEnd(24)}  ${'LAST SEEN'.padEnd(24)}  ${'SEQS'.padEnd(13)} CUSTOMERS`,
      ];
      for (const r of reasons) {
        const more = r.customerCount > r.customers.length ? ', …' : '';
        lines.push(
          `${r.reason.padEnd(22)} ${String(r.count).padStart(6)} ${String(r.redriven).padStart(8)}  ${r.firstSeen.padEnd(24)}  ${r.lastSeen.padEnd(24)}  ${`${r.firstSeq}-${r.lastSeq}`.padEnd(13)} ${r.customerCount} (${r.customers.join(', ')}${more})`,
        );
      }
      lines.push(`${total} dead letters, ${redrivenCount} redriven`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  dlq
    .command('show')
    .description('one dead letter: its reason, origin, headers and the original bytes')
    .argument('<seq>', 'dead-letter stream sequence')
    .option('--json', 'print JSON (body as base64)')
    .action(async (seqText: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
      if (!/^[1-9]\d*$/u.test(seqText)) {
        throw new ValidationError(
          ErrorCode.InvalidSelection,
          `invalid sequence ${JSON.stringify(seqText)}`,
          'seq',
        );
      }
      const letter = await withConnection(ctx, 'order-fleet-dlq', async (nc) =>
        (await DeadLetterAdmin.open(nc, ctx.names)).show(Number(seqText)),
      );
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(letterJson(letter))}\n`);
        return;
      }
      const body = describeBody(letter.data);
      const lines = [
        `dead letter ${letter.seq} (${new Date(letter.timeMs).toISOString()})`,
        `reason   ${letter.reason}${letter.rule === undefined ? '' : ` (rule ${letter.rule})`}`,
        `detail   ${letter.detail}`,
        `source   ${letter.sourceStream} seq ${letter.sourceSeq ?? '?'} on ${letter.sourceSubject}`,
        `customer ${letter.customerId ?? '-'}`,
        'headers',
        ...Object.entries(letter.headers).map(([k, v]) => `  ${k}: ${v}`),
        `body (${letter.data.length} bytes, ${body.encoding})`,
        body.text,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  withSelection(dlq.command('redrive'))
    .description(
      'put selected dead letters back on their source subject, byte for byte; a dead letter is redriven once, however often this runs',
    )
    .option('--all', 'every dead letter')
    .option('--dry-run', 'show what would be redriven, change nothing')
    .option('--json', 'print JSON lines, one per dead letter, then a summary')
    .action(async (opts: SelectionFlags & { dryRun?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
      const selection = selectionOf(opts);
      requireSelection(selection, opts, 'redrive');
      const dryRun = opts.dryRun === true;
      const outcomes = await withConnection(ctx, 'order-fleet-dlq', async (nc) => {
        const admin = await DeadLetterAdmin.open(nc, ctx.names);
        const letters = await admin.read(selection);
        return admin.redrive(letters, {
          dryRun,
          onOutcome: (o) =>
            process.stdout.write(
              opts.json === true ? `${JSON.stringify(o)}\n` : `${describeOutcome(o)}\n`,
            ),
        });
      });
      const summary = countOutcomes(outcomes, dryRun);
      process.stdout.write(
        opts.json === true
          ? `${JSON.stringify(summary)}\n`
          : `${summary.selected} selected: ${dryRun ? `${summary.wouldRedrive} would be redriven` : `${summary.redriven} redriven`}, ${summary.alreadyRedriven} already redriven, ${summary.refused} refused${dryRun ? ' (dry run: nothing changed)' : ''}\n`,
      );
    });

  withSelection(dlq.command('purge'))
    .description('delete selected dead letters for good')
    .option('--all', 'every dead letter')
    .option('--dry-run', 'show what would be deleted, change nothing')
    .option('--yes', 'confirm the deletion')
    .option('--json', 'print JSON')
    .action(
      async (
        opts: SelectionFlags & { dryRun?: boolean; yes?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
        const selection = selectionOf(opts);
        requireSelection(selection, opts, 'purge');
        const dryRun = opts.dryRun === true;
        if (!dryRun && opts.yes !== true) {
          throw new OrderFleetError(
            ErrorCode.ConfirmationRequired,
            'purge deletes dead letters for good: look with --dry-run, then confirm with --yes',
          );
        }
        const result = await withConnection(ctx, 'order-fleet-dlq', async (nc) => {
          const admin = await DeadLetterAdmin.open(nc, ctx.names);
          const letters = await admin.read(selection, { headersOnly: true });
          const purged = dryRun ? 0 : await admin.purge(letters);
          return { selected: letters.length, purged, seqs: letters.map((l) => l.seq) };
        });
        process.stdout.write(
          opts.json === true
            ? `${JSON.stringify({ ...result, dryRun })}\n`
            : dryRun
              ? `${result.selected} would be purged: ${result.seqs.join(', ')} (dry run: nothing changed)\n`
              : `${result.purged} dead letters purged\n`,
        );
      },
    );
}

function letterJson(letter: DeadLetter): Record<string, unknown> {
  const { data, timeMs, ...rest } = letter;
  return {
    ...rest,
    at: new Date(timeMs).toISOString(),
    bytes: data.length,
    body: describeBody(data),
    base64: Buffer.from(data).toString('base64'),
  };
}

function describeOutcome(o: RedriveOutcome): string {
  switch (o.action) {
    case 'would-redrive':
      return `${o.seq}: would redrive to ${o.subject}`;
    case 'redriven':
      return `${o.seq}: redriven to ${o.subject} as seq ${o.newSeq}`;
    case 'already-redriven':
      return `${o.seq}: already redriven${o.newSeq === undefined ? '' : ` (seq ${o.newSeq})`}`;
    case 'refused':
      return `${o.seq}: refused: ${o.why}`;
  }
}

function countOutcomes(
  outcomes: readonly RedriveOutcome[],
  dryRun: boolean,
): {
  selected: number;
  redriven: number;
  wouldRedrive: number;
  alreadyRedriven: number;
  refused: number;
  dryRun: boolean;
} {
  const count = (a: RedriveOutcome['action']): number =>
    outcomes.filter((o) => o.action === a).length;
  return {
    selected: outcomes.length,
    redriven: count('redriven'),
    wouldRedrive: count('would-redrive'),
    alreadyRedriven: count('already-redriven'),
    refused: count('refused'),
    dryRun,
  };
}
