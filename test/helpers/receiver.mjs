// A stand-in for the Gonka decentralized-api's callback endpoints
// (POST /v2/poc-batches/:model/generated | /validated), run as its own process on loopback.
// The parent test drives it over IPC:
//   {cmd: 'mode', mode: 'ok' | 'error500', id}   answer 200 or 500 to every callback
//   {cmd: 'down', id} / {cmd: 'up', id}           close the port (connection refused) / listen again
// and it reports {type: 'callback', path, body} for every callback it accepted (200), plus
// {type: 'refused', path} for every one it answered with 500.
import http from 'node:http';

let mode = 'ok';
let port = Number(process.env.RECEIVER_PORT ?? 0);
let server = null;
const sockets = new Set();

function handle(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const path = req.url ?? '';
    if (mode === 'error500') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"detail":"receiver is failing on purpose"}');
      process.send?.({ type: 'refused', path });
      return;
    }
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"detail":"invalid json"}');
      process.send?.({ type: 'bad', path });
      return;
    }
    // Reported before the answer, so the parent never sees an acknowledged body it did not get.
    process.send?.({ type: 'callback', path, body }, () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"OK"}');
    });
  });
}

function up() {
  return new Promise((resolve, reject) => {
    server = http.createServer(handle);
    server.keepAliveTimeout = 1000;
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      port = server.address().port;
      resolve();
    });
  });
}

function down() {
  return new Promise((resolve) => {
    if (!server) return resolve();
    server.close(() => resolve());
    for (const s of sockets) s.destroy();
    server = null;
  });
}

process.on('message', async (m) => {
  if (m.cmd === 'mode') mode = m.mode;
  else if (m.cmd === 'down') await down();
  else if (m.cmd === 'up') await up();
  process.send?.({ type: 'ack', id: m.id, port });
});
process.on('disconnect', () => process.exit(0));

await up();
process.send?.({ type: 'ready', port });
