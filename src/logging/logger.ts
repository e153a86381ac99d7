import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/**
 * JSON logs to stdout. Messages are static strings; data goes in fields, so logs can be queried.
 * Anything that could carry a credential is redacted wherever it appears.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'order-fleet' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'password',
          'token',
          'creds',
          '*.password',
          '*.token',
          '*.creds',
          'nats.password',
          'nats.token',
          'nats.creds',
          'config.nats.password',
          'config.nats.token',
          'config.nats.creds',
          'nkeySeed',
          '*.nkeySeed',
          'nats.nkeySeed',
          'config.nats.nkeySeed',
          'webhookSecrets',
          '*.webhookSecrets',
          'config.notifier.webhookSecrets',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
