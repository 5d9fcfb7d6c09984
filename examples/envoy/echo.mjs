#!/usr/bin/env node
// A stand-in upstream for the example and the tests: answers every request with its method,
// URL and headers as JSON, so the identity headers the filter forwards can be seen.
//   node examples/envoy/echo.mjs 8080
import { once } from 'node:events';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';

/**
 * Start the echo server on 127.0.0.1:`port` (0: any); resolves to {port, close}. `onRequest` sees
 * every request that reached it.
 */
export async function echoServer(port = 0, { onRequest } = {}) {
  const server = createServer((req, res) => {
    onRequest?.(req);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ method: req.method, url: req.url, headers: req.headers })}\n`);
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return { port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { port } = await echoServer(Number(process.argv[2] ?? 8080));
  console.log(`echo upstream on 127.0.0.1:${port}`);
}
