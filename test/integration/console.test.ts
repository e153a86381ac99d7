// The web console in a real browser (Debian's chromium, driven by playwright-core) against a real
// fleet: it shows each partition's owner and moves the partitions of a worker that gets SIGTERM
// to its new owner, lists the handoffs, counts dead letters by reason, and looks up a customer's
// contents, owner and history. With UPDATE_SCREENSHOTS=1 it refreshes the pictures in docs/.

import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { chromium, type Browser, type Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { eventSubject } from '../../src/contract/subjects.js';
import { REPO_ROOT, spawnWorker, waitReady } from '../support/fleet.js';
import { settledOwners, startFleetScenario, useTeardown } from '../support/fleet-scenarios.js';
import { CHROMIUM, CHROMIUM_ARGS, chromiumAvailable, startConsole } from '../support/console.js';
import { Driver } from '../support/summaries.js';

const teardown = useTeardown();
const shots =
  process.env['UPDATE_SCREENSHOTS'] === '1'
    ? path.join(REPO_ROOT, 'docs')
    : path.join(tmpdir(), 'order-fleet-console-shots');

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `console-${name}.png`), fullPage: true });
}

describe.skipIf(!chromiumAvailable())('order-fleet console in a browser', () => {
  it('shows owners, a partition moving on SIGTERM, dead letters and a customer', async () => {
    // Windows stay open (no timer entries racing the lookup's comparison with the fold).
    const env = { SUMMARY_QUIET_MS: '3600000', SUMMARY_MAX_MS: '3600000' };
    const { dep, workers, step } = await startFleetScenario(teardown, {
      partitions: 8,
      leaseTtlMs: 2000,
    });
    const w1 = spawnWorker(dep, 'console-w1', env);
    const w2 = spawnWorker(dep, 'console-w2', env);
    workers.push(w1, w2);
    await Promise.all([waitReady(w1), waitReady(w2)]);
    const before = await settledOwners(dep, [w1.id, w2.id]);
    step('fleet up');

    const driver = new Driver(dep);
    teardown.push(() => driver.close());
    const customer = 'console-ann';
    await driver.round(
      0,
      new Map([
        [
          customer,
          [
            { type: 'order.created' as const },
            { type: 'items.added' as const, items: [1, 2, 3] },
            { type: 'items.removed' as const, items: [2] },
          ],
        ],
        ['console-bob', [{ type: 'items.added' as const, items: [7] }]],
      ]),
      10,
    );
    const js = jetstream(dep.nc);
    const bad = new TextEncoder();
    for (const [i, body] of ['{"id":"x"', 'not json'].entries())
      await js.publish(eventSubject(dep.names, dep.partitions, 'console-bob'), bad.encode(body), {
        msgID: `bad-${i}`,
      });
    await js.publish(
      eventSubject(dep.names, dep.partitions, 'console-bob'),
      bad.encode('{"id":"u1","type":"order.shipped"}'),
      { msgID: 'bad-type' },
    );

    const consoleProc = await startConsole(dep, ['--consumer-poll-ms', '2000'], env);
    teardown.push(() => consoleProc.stop());
    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
    });
    teardown.push(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(consoleProc.url);
    step('console open');

    // Every partition shows the owner the fleet status reports.
    await expect
      .poll(() => page.locator('[data-testid=member]').count(), { timeout: 30_000 })
      .toBe(2);
    for (const t of before.table) {
      await expect
        .poll(
          () =>
            page
              .locator(`[data-testid=partition][data-partition="${t.partition}"]`)
              .getAttribute('data-owner'),
          { timeout: 30_000 },
        )
        .toBe(t.owner);
    }
    await expect.poll(() => page.locator('#m-dlq').textContent(), { timeout: 30_000 }).toBe('3');
    await screenshot(page, 'fleet');

    // SIGTERM w1: its partitions move to w2, and the page says so.
    const moved = before.table.filter((t) => t.owner === w1.id).map((t) => t.partition);
    expect(moved.length).toBeGreaterThan(0);
    expect(await w1.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    step('w1 stopped');
    for (const p of moved) {
      await expect
        .poll(
          () =>
            page
              .locator(`[data-testid=partition][data-partition="${p}"]`)
              .getAttribute('data-owner'),
          { timeout: 30_000 },
        )
        .toBe(w2.id);
      await expect
        .poll(
          () =>
            page.locator(`[data-testid=event][data-partition="${p}"][data-kind=handoff]`).count(),
          { timeout: 30_000 },
        )
        .toBeGreaterThan(0);
    }
    await expect
      .poll(() => page.locator('[data-testid=member]').count(), { timeout: 30_000 })
      .toBe(1);
    await screenshot(page, 'handoff');

    // Dead letters by reason.
    await page.click('nav a[data-view=dead-letters]');
    const count = (reason: string) =>
      page.locator(`[data-testid=dlq-reason][data-reason=${reason}]`).getAttribute('data-count');
    await expect.poll(() => count('MALFORMED_JSON'), { timeout: 30_000 }).toBe('2');
    await expect.poll(() => count('INVALID_EVENT'), { timeout: 30_000 }).toBe('1');
    await screenshot(page, 'dead-letters');

    // A customer: contents from the owner, and the history that led there.
    await page.click('nav a[data-view=customer]');
    await page.fill('#customer-id', customer);
    await page.click('#lookup button');
    await expect
      .poll(() => page.locator('[data-testid=customer-contents]').textContent(), {
        timeout: 30_000,
      })
      .toBe('[1, 3]');
    expect(await page.locator('[data-testid=customer-owner]').textContent()).toBe(w2.id);
    expect(await page.locator('[data-testid=customer-fold]').textContent()).toBe('matches');
    expect(await page.locator('[data-testid=history-row].event').count()).toBe(3);
    await screenshot(page, 'customer');

    await page.click('nav a[data-view=summaries]');
    await screenshot(page, 'summaries');
  });
});
