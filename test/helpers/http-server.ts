import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join, normalize } from 'node:path';

/**
 * Serves a directory on 127.0.0.1 (port 0) for integration tests, with deterministic
 * fault injection.
 *
 * Faults are counter-based, never random: every request to a path accepted by `only` gets
 * a sequence number n (1, 2, 3, …), and `dropEvery: 3` destroys the socket of requests
 * 3, 6, 9…, `truncateEvery` sends the full Content-Length but only half the body and
 * then cuts the connection, `errorEvery` answers 500. `maxFaults` bounds the total so
 * a retrying client always gets through. Every request is counted per path (`count`)
 * whether or not it was faulted. `close()` destroys open sockets so tests end promptly.
 */
export interface FaultPlan {
  dropEvery?: number;
  truncateEvery?: number;
  errorEvery?: number;
  /** Total faults to inject before serving cleanly (default unbounded). */
  maxFaults?: number;
  /** Which request paths may be faulted (default: all). */
  only?: (path: string) => boolean;
}

export interface TestServer {
  /** `http://127.0.0.1:<port>` with no trailing slash. */
  url: string;
  /** Requests seen per URL path (`/dists/stable/InRelease`). */
  count(path: string): number;
  /** Total requests, optionally only paths matching `filter`. */
  total(filter?: (path: string) => boolean): number;
  /** Paths requested, in order. */
  readonly log: string[];
  faultsInjected(): number;
  setFaults(plan: FaultPlan | undefined): void;
  resetCounts(): void;
  close(): Promise<void>;
}

export async function startFileServer(root: string, faults?: FaultPlan): Promise<TestServer> {
  const counts = new Map<string, number>();
  const log: string[] = [];
  const sockets = new Set<Socket>();
  let plan = faults;
  let sequence = 0;
  let injected = 0;

  const pickFault = (path: string): 'drop' | 'truncate' | 'error' | undefined => {
    if (!plan || (plan.only && !plan.only(path))) return undefined;
    sequence++;
    if (plan.maxFaults !== undefined && injected >= plan.maxFaults) return undefined;
    const hit = (every: number | undefined) => every !== undefined && every > 0 && sequence % every === 0;
    const fault = hit(plan.dropEvery)
      ? 'drop'
      : hit(plan.truncateEvery)
        ? 'truncate'
        : hit(plan.errorEvery)
          ? 'error'
          : undefined;
    if (fault) injected++;
    return fault;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    counts.set(path, (counts.get(path) ?? 0) + 1);
    log.push(path);
    const fault = pickFault(path);
    if (fault === 'drop') {
      req.socket.destroy();
      return;
    }
    if (fault === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('injected failure\n');
      return;
    }
    const relative = normalize(path).replace(/^(\.\.(\/|$))+/, '');
    let body: Buffer;
    try {
      body = await readFile(join(root, relative));
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    if (fault === 'truncate') {
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => req.socket.destroy());
      return;
    }
    res.end(body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    count: (path) => counts.get(path) ?? 0,
    total: (filter) => log.filter((p) => !filter || filter(p)).length,
    log,
    faultsInjected: () => injected,
    setFaults(next) {
      plan = next;
      sequence = 0;
      injected = 0;
    },
    resetCounts() {
      counts.clear();
      log.length = 0;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
