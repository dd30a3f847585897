// Whether a callback URL points back at this server (issue 11 item 9: a callback to
// `…/api/v1/pow/stop?x=` made the node stop itself). Compared by port and by every host name that
// reaches this process: loopback, the bound address, and each local interface when bound to all.
// A DNS name that resolves to this machine is not looked up (the check stays synchronous).
import { networkInterfaces } from 'node:os';

export interface ListenAddress {
  host: string;
  port: number;
}

const bare = (h: string) => h.replace(/^\[|\]$/g, '').toLowerCase();

function isLoopbackOrAny(host: string): boolean {
  return (
    host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || host === '0.0.0.0' || host === '::' ||
    /^::ffff:(127\.|7f)/.test(host)
  );
}

function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(bare(a.address));
  return out;
}

export function pointsAtSelf(u: URL, self: ListenAddress): boolean {
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  if (port !== self.port) return false;
  const host = bare(u.hostname);
  const bound = bare(self.host);
  if (host === bound || isLoopbackOrAny(host)) return true;
  // Bound to all interfaces: every local address reaches this server.
  return (bound === '0.0.0.0' || bound === '::') && localAddresses().has(host);
}
