/**
 * How bytes reach a server: a unix socket for local remotes, or TLS that accepts exactly the
 * pinned certificate. LXD's own client trusts a remote's self-signed certificate by pinning it,
 * not by hostname; we do the same by comparing fingerprints in `checkServerIdentity`.
 * TLS session resumption is off: a resumed session presents no certificate, and Node skips
 * `checkServerIdentity` for it, which would let a swapped server through unchecked.
 */
import { X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { Agent, type Dispatcher } from "undici";
import type { ClientOptions } from "ws";
import { CertificateMismatchError } from "./errors";
import type { Remote } from "./remotes";

export interface Transport {
  /** Base URL for HTTP requests (`http://lxd` for unix sockets). */
  base: string;
  dispatcher: Dispatcher;
  /** Base for websocket URLs, and the options `ws` needs to reach the same server. */
  wsBase: string;
  wsOptions: ClientOptions;
  close(): Promise<void>;
}

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

function pinCheck(remote: Remote, pinned: string) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    if (cert.fingerprint256 === pinned) return undefined;
    return new CertificateMismatchError(
      `server presented certificate ${cert.fingerprint256}, not the pinned ${pinned}`,
      { remote: remote.name },
      `If the server was reinstalled on purpose, re-trust it: "lxc remote remove ${remote.name}" then "lxc remote add ${remote.name} ${remote.addr}"`,
    );
  };
}

export function openTransport(remote: Remote, opts: { connectTimeoutMs?: number } = {}): Transport {
  const connectTimeout = opts.connectTimeoutMs ?? 10_000;
  if (remote.socketPath) {
    const dispatcher = new Agent({ connect: { socketPath: remote.socketPath, timeout: connectTimeout } });
    return {
      base: "http://lxd",
      dispatcher,
      wsBase: `ws+unix://${remote.socketPath}:`,
      wsOptions: { perMessageDeflate: false, handshakeTimeout: connectTimeout },
      close: () => dispatcher.close(),
    };
  }
  const pinned = fingerprint(remote.serverCert!);
  const tlsOpts = {
    ca: remote.serverCert,
    cert: remote.clientCert,
    key: remote.clientKey,
    rejectUnauthorized: true,
    checkServerIdentity: pinCheck(remote, pinned),
  };
  const dispatcher = new Agent({
    connect: { ...tlsOpts, timeout: connectTimeout, maxCachedSessions: 0 },
    keepAliveTimeout: 4_000,
  });
  return {
    base: remote.addr,
    dispatcher,
    wsBase: remote.addr.replace(/^https/, "wss"),
    // ws passes these through to tls.connect; its typing of checkServerIdentity is narrower.
    wsOptions: { ...tlsOpts, perMessageDeflate: false, handshakeTimeout: connectTimeout } as unknown as ClientOptions,
    close: () => dispatcher.close(),
  };
}
