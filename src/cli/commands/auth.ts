import type { Command } from 'commander';
import { authInit } from '../../auth/auth-init.js';
import { commandContext, type GlobalFlags } from '../context.js';

export function registerAuth(program: Command, env: NodeJS.ProcessEnv): void {
  const auth = program
    .command('auth')
    .description('least-privilege NATS credentials for the fleet roles');
  auth
    .command('init')
    .description(
      'write nats-auth.conf (for the server to include), one <role>.env per role (admin, publisher, worker, notifier, observer), and with --tls a CA and certificates',
    )
    .requiredOption('--out <dir>', 'directory to write to (created, mode 0700)')
    .option('--tls', 'also write a CA, a server certificate and client certificates (mTLS)')
    .option(
      '--hosts <names>',
      'comma-separated DNS names / IPs for the server certificate (loopback is always included)',
    )
    .option('--server-dir <dir>', 'where the server will read its TLS files (default: --out)')
    .option('--client-dir <dir>', 'where clients will read their TLS files (default: --out)')
    .option('--force', 'replace existing files (every role then needs its new files)')
    .option('--json', 'print the report as JSON')
    .action(
      async (
        opts: {
          out: string;
          tls?: boolean;
          hosts?: string;
          serverDir?: string;
          clientDir?: string;
          force?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
        const report = await authInit({
          outDir: opts.out,
          names: ctx.names,
          tls: opts.tls === true,
          hosts: (opts.hosts ?? '')
            .split(',')
            .map((h) => h.trim())
            .filter((h) => h !== ''),
          force: opts.force === true,
          ...(opts.serverDir === undefined ? {} : { serverDir: opts.serverDir }),
          ...(opts.clientDir === undefined ? {} : { clientDir: opts.clientDir }),
        });
        // Public keys and file names only: the seeds stay in the files.
        if (opts.json === true) {
          process.stdout.write(`${JSON.stringify(report)}\n`);
          return;
        }
        process.stdout.write(`wrote ${report.files.length} files to ${report.outDir}\n`);
        for (const r of report.roles)
          process.stdout.write(`  ${r.role.padEnd(9)} ${r.publicKey}  ${r.role}.env\n`);
      },
    );
}
