import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Command } from 'commander';
import { ErrorCode, OrderFleetError, ValidationError } from '../../errors.js';
import { kvLeaseStore } from '../../fleet/lease-store.js';
import { LeaseManager } from '../../fleet/leases.js';
import { loadDeployment } from '../../nats/deployment.js';
import {
  checkWholeHistory,
  fence,
  rebuildProgress,
  renderProgressBar,
  requestRebuild,
  type RebuildDeps,
} from '../../recovery/rebuild.js';
import { WatermarkStore } from '../../state/watermark-store.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];
/** A runner that has not taken the request after this long is fenced again (it may have been starting). */
const NUDGE_MS = 10_000;

export function registerRebuild(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('rebuild')
    .description(
      "recompute customer state from the log while the fleet runs: each partition's owner restarts it from the start of the log (fenced, a new epoch), rebuilding the timer index; summaries already sent are not sent again",
    )
    .option('--partition <n>', 'only this partition (repeatable; default: all)', collect, [])
    .option('--yes', 'confirm: without it, only the plan is shown')
    .option('--no-wait', 'request the rebuild and exit; the runners carry it out')
    .option('--json', 'JSON lines on stdout (progress, then a summary) instead of a progress bar')
    .action(
      async (
        opts: { partition: string[]; yes?: boolean; wait: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
        const out = (line: unknown): void => {
          process.stdout.write(`${JSON.stringify(line)}\n`);
        };
        await withConnection(ctx, 'order-fleet-rebuild', async (nc) => {
          const deployment = await loadDeployment(nc, ctx.names);
          const partitions = parsePartitions(opts.partition, deployment.partitions);
          const kvm = new Kvm(nc);
          const jsm = await jetstreamManager(nc);
          const deps: RebuildDeps = {
            jsm,
            names: ctx.names,
            partitions: deployment.partitions,
            watermarks: new WatermarkStore(await kvm.open(ctx.names.metaBucket)),
            leases: new LeaseManager(kvLeaseStore(await kvm.open(ctx.names.leaseBucket)), {
              workerId: 'rebuild',
              ttlMs: 1000,
              log: ctx.log,
            }),
          };
          // Refuse before asking for anything: a refused rebuild changes nothing.
          const head = await checkWholeHistory(jsm, ctx.names);
          if (opts.yes !== true) {
            const plan = { plan: 'rebuild', partitions, head, confirm: 'run again with --yes' };
            if (opts.json === true) out(plan);
            else
              process.stderr.write(
                `would rebuild ${partitions.length} partition(s) [${partitions.join(',')}] from seq 1 to ${head}; nothing changed. Run again with --yes.\n`,
              );
            throw new OrderFleetError(ErrorCode.ConfirmationRequired, 'rebuild needs --yes');
          }
          const targets = await requestRebuild(deps, partitions);
          if (opts.json === true)
            out({
              event: 'requested',
              partitions: targets.map(({ partition, generation, owner }) => ({
                partition,
                generation,
                owner,
              })),
            });
          else
            process.stderr.write(
              `rebuild requested for ${targets.length} partition(s); ${targets.filter((t) => t.owner === null).length} without an owner will be rebuilt when a worker takes them\n`,
            );
          if (!opts.wait) return;
          const began = Date.now();
          let last = { at: began, applied: 0 };
          let rate = 0;
          const tty = process.stderr.isTTY;
          let lastLine = 0;
          for (;;) {
            const progress = await rebuildProgress(deps, targets, head);
            const now = Date.now();
            if (now > last.at) {
              const instant = ((progress.applied - last.applied) * 1000) / (now - last.at);
              rate = rate === 0 ? instant : 0.7 * rate + 0.3 * Math.max(0, instant);
            }
            last = { at: now, applied: progress.applied };
            if (opts.json === true)
              out({ event: 'progress', ...progress, ratePerSec: Math.round(rate) });
            else if (tty) process.stderr.write(`\r${renderProgressBar(progress, rate)}`);
            else if (now - lastLine >= 2000 || progress.done === targets.length) {
              lastLine = now;
              process.stderr.write(`${renderProgressBar(progress, rate)}\n`);
            }
            if (progress.done === targets.length) break;
            // A runner that was starting when we fenced may have missed the request: fence again.
            for (const p of progress.partitions) {
              if (p.state === 'requested' && now - began > NUDGE_MS) await fence(deps, p.partition);
            }
            await sleep(500);
          }
          const durationMs = Date.now() - began;
          if (opts.json === true) out({ event: 'done', partitions: targets.length, durationMs });
          else
            process.stderr.write(
              `${tty ? '\n' : ''}rebuilt ${targets.length} partition(s) in ${(durationMs / 1000).toFixed(1)} s\n`,
            );
        });
      },
    );
}

function parsePartitions(raw: readonly string[], count: number): number[] {
  if (raw.length === 0) return Array.from({ length: count }, (_, p) => p);
  const out = new Set<number>();
  for (const text of raw) {
    for (const part of text.split(',')) {
      if (!/^\d+$/u.test(part) || Number(part) >= count) {
        throw new ValidationError(
          ErrorCode.InvalidSelection,
          `invalid partition ${JSON.stringify(part)}: partitions are 0-${count - 1}`,
          'partition',
        );
      }
      out.add(Number(part));
    }
  }
  return [...out].sort((a, b) => a - b);
}
