// The fault schedule: a pure function of the seed and the options, so a run can be repeated
// exactly (same faults, same order, same durations, same target picks). Targets are chosen at
// run time from a `pick` in [0, 1), so a plan does not depend on process ids or timing.

import { rng } from '../../test/support/model.js';

export const FAULT_KINDS = [
  'worker-kill',
  'worker-term',
  'worker-stop',
  'nats-kill',
  'nats-stall',
  'net-cut',
  'scale-up',
  'scale-down',
  'rolling-restart',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const FAULT_DESCRIPTIONS: Readonly<Record<FaultKind, string>> = {
  'worker-kill': 'SIGKILL a worker, start a replacement after a short delay',
  'worker-term': 'SIGTERM a worker (graceful handoff), start a replacement',
  'worker-stop': 'SIGSTOP a worker for longer than the lease TTL, then SIGCONT',
  'nats-kill': 'kill -9 one NATS node (the others stay up), restart it on the same store',
  'nats-stall': 'SIGSTOP one NATS node for longer than the lease TTL, then SIGCONT',
  'net-cut': "cut a worker's TCP relay to every NATS node for longer than the lease TTL, then heal",
  'scale-up': 'start one more worker',
  'scale-down': 'SIGTERM a worker without replacing it',
  'rolling-restart':
    'replace every worker one by one: start the new one, wait ready, SIGTERM the old',
};

/** NATS faults run one at a time (one node down at most); fleet faults have their own lane. */
export type FaultLane = 'nats' | 'fleet';

export function laneOf(kind: FaultKind): FaultLane {
  return kind === 'nats-kill' || kind === 'nats-stall' ? 'nats' : 'fleet';
}

export interface PlannedFault {
  /** Position in the plan, from 1. */
  readonly n: number;
  readonly kind: FaultKind;
  /** Offset from the start of the fault phase. */
  readonly atMs: number;
  /** How long the fault lasts (stop, stall, cut, node down) or the delay before a restart. */
  readonly durationMs: number;
  /** Chooses the target among the eligible ones at run time: index floor(pick * eligible). */
  readonly pick: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  /** Length of the fault phase. */
  readonly durationMs: number;
  /** Faults per minute, on average. */
  readonly rate: number;
  readonly kinds: readonly FaultKind[];
  readonly leaseTtlMs: number;
  /** Workers at the start; scaling keeps the fleet within [minWorkers, maxWorkers]. */
  readonly workers: number;
  readonly minWorkers: number;
  readonly maxWorkers: number;
}

/** A rolling restart replaces every worker, so it is drawn less often than the quick faults. */
const WEIGHT: Readonly<Record<FaultKind, number>> = {
  'worker-kill': 1,
  'worker-term': 1,
  'worker-stop': 1,
  'nats-kill': 1,
  'nats-stall': 1,
  'net-cut': 1,
  'scale-up': 0.6,
  'scale-down': 0.6,
  'rolling-restart': 0.3,
};

/**
 * Draws faults at exponential-ish intervals (uniform 0.5–1.5 × the mean) over the fault phase.
 * Scaling is simulated so the plan never asks to go beyond the bounds: a scale-down at the
 * minimum becomes a scale-up (when allowed) and the reverse; if neither is allowed it is dropped.
 */
export function planFaults(opts: ScheduleOptions): PlannedFault[] {
  if (opts.kinds.length === 0 || opts.rate <= 0) return [];
  const random = rng(opts.seed);
  const meanGapMs = 60_000 / opts.rate;
  const totalWeight = opts.kinds.reduce((sum, k) => sum + WEIGHT[k], 0);
  const draw = (): FaultKind => {
    let x = random() * totalWeight;
    for (const k of opts.kinds) {
      x -= WEIGHT[k];
      if (x < 0) return k;
    }
    return opts.kinds[opts.kinds.length - 1] ?? 'worker-kill';
  };
  const ttl = opts.leaseTtlMs;
  let size = opts.workers;
  const plan: PlannedFault[] = [];
  // The first fault comes after one gap, so the fleet has settled into its first assignment.
  for (let at = meanGapMs * (0.5 + random()); at < opts.durationMs;) {
    let kind = draw();
    const pick = random();
    const r = random();
    const gap = meanGapMs * (0.5 + random());
    if (kind === 'scale-down' && size <= opts.minWorkers)
      kind = opts.kinds.includes('scale-up') && size < opts.maxWorkers ? 'scale-up' : kind;
    else if (kind === 'scale-up' && size >= opts.maxWorkers)
      kind = opts.kinds.includes('scale-down') && size > opts.minWorkers ? 'scale-down' : kind;
    const allowed =
      (kind !== 'scale-down' || size > opts.minWorkers) &&
      (kind !== 'scale-up' || size < opts.maxWorkers);
    if (allowed) {
      if (kind === 'scale-up') size++;
      if (kind === 'scale-down') size--;
      plan.push({
        n: plan.length + 1,
        kind,
        atMs: Math.floor(at), // floor, not round: `at` < durationMs must hold for atMs too
        durationMs: Math.round(faultDuration(kind, ttl, r)),
        pick,
      });
    }
    at += gap;
  }
  return plan;
}

/** Durations relative to the lease TTL: the interesting faults outlast it. */
function faultDuration(kind: FaultKind, ttl: number, r: number): number {
  switch (kind) {
    case 'worker-stop':
    case 'net-cut':
    case 'nats-stall':
      return ttl * (1.3 + 0.9 * r);
    case 'nats-kill':
      return 1_000 + 5_000 * r;
    case 'worker-kill':
    case 'worker-term':
      return 300 + 2_700 * r;
    case 'scale-up':
    case 'scale-down':
    case 'rolling-restart':
      return 0;
  }
}

/** Parses `--faults`: `all`, or a comma-separated list of kinds; unknown kinds are an error. */
export function parseFaultKinds(text: string): FaultKind[] {
  const parts = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (parts.length === 1 && parts[0] === 'all') return [...FAULT_KINDS];
  if (parts.length === 1 && parts[0] === 'none') return [];
  const unknown = parts.filter((p) => !(FAULT_KINDS as readonly string[]).includes(p));
  if (unknown.length > 0)
    throw new RangeError(
      `unknown fault kind(s): ${unknown.join(', ')} (known: ${FAULT_KINDS.join(', ')}, all, none)`,
    );
  return [...new Set(parts as FaultKind[])];
}

/** Selects the target of a pick among `eligible` (sorted by the caller), or undefined when empty. */
export function pickTarget<T>(eligible: readonly T[], pick: number): T | undefined {
  if (eligible.length === 0) return undefined;
  return eligible[Math.min(eligible.length - 1, Math.floor(pick * eligible.length))];
}
