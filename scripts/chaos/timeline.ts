// What happened when: faults starting and ending, exits, settle progress. Printed as it happens
// and kept for the report.

export type TimelineKind = 'phase' | 'fault' | 'recover' | 'exit' | 'note' | 'violation';

export interface TimelineEvent {
  /** Milliseconds since the start of the run. */
  readonly atMs: number;
  readonly kind: TimelineKind;
  readonly text: string;
  /** The plan entry this event belongs to, if any. */
  readonly fault?: number;
}

export class Timeline {
  readonly events: TimelineEvent[] = [];
  readonly t0 = Date.now();

  constructor(private readonly print: (line: string) => void) {}

  now(): number {
    return Date.now() - this.t0;
  }

  add(kind: TimelineKind, text: string, fault?: number): void {
    const event: TimelineEvent = {
      atMs: this.now(),
      kind,
      text,
      ...(fault === undefined ? {} : { fault }),
    };
    this.events.push(event);
    this.print(formatEvent(event));
  }
}

export function formatEvent(e: TimelineEvent): string {
  const t = `+${(e.atMs / 1000).toFixed(1)}s`.padStart(8);
  const tag = e.fault === undefined ? '' : `#${e.fault} `;
  return `${t}  ${e.kind.padEnd(9)} ${tag}${e.text}`;
}
