import 'reflect-metadata'; // @peculiar/x509 resolves its ASN.1 classes through tsyringe
import { isIP } from 'node:net';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * A small certificate authority for one fleet: a CA, one server certificate and one client
 * certificate per role, ECDSA P-256 (fast to make, accepted by nats-server and Node's TLS).
 * Generated in process with WebCrypto, so `auth init --tls` needs no openssl.
 */
export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

export interface FleetPki {
  readonly ca: PemPair;
  readonly server: PemPair;
  readonly clients: Readonly<Record<string, PemPair>>;
}

export interface PkiOptions {
  /** DNS names and IP addresses the server certificate is valid for (loopback always is). */
  readonly hosts: readonly string[];
  /** Client certificate common names, by role. */
  readonly clients: Readonly<Record<string, string>>;
  readonly caName: string;
  readonly validDays: number;
  readonly now?: Date;
}

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const LOOPBACK = ['localhost', '127.0.0.1', '::1'];
const DAY_MS = 24 * 3600 * 1000;

// Node's WebCrypto is the standard one; the library's type names the DOM's.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export async function generateFleetPki(options: PkiOptions): Promise<FleetPki> {
  const notBefore = new Date((options.now ?? new Date()).getTime() - 60_000);
  const notAfter = new Date(notBefore.getTime() + options.validDays * DAY_MS);
  const caKeys = await keyPair();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${options.caName}`,
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const issue = async (
    cn: string,
    usage: string,
    sans: x509.JsonGeneralName[],
  ): Promise<PemPair> => {
    const keys = await keyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${cn}`,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([usage], false),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ...(sans.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(sans, false)]),
      ],
    });
    return { cert: cert.toString('pem'), key: await privateKeyPem(keys.privateKey) };
  };
  const hosts = [...new Set([...LOOPBACK, ...options.hosts])];
  const server = await issue(
    hosts.find((h) => isIP(h) === 0) ?? 'localhost',
    x509.ExtendedKeyUsage.serverAuth,
    hosts.map((h) => (isIP(h) === 0 ? { type: 'dns', value: h } : { type: 'ip', value: h })),
  );
  const clients: Record<string, PemPair> = {};
  for (const [role, cn] of Object.entries(options.clients)) {
    clients[role] = await issue(cn, x509.ExtendedKeyUsage.clientAuth, []);
  }
  return {
    ca: { cert: caCert.toString('pem'), key: await privateKeyPem(caKeys.privateKey) },
    server,
    clients,
  };
}

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
}

/** Positive, random, 16 bytes: serial numbers must be unique per CA. */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const lines = der.toString('base64').match(/.{1,64}/gu) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join('\n')}\n-----END PRIVATE KEY-----\n`;
}
