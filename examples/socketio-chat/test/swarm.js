// N socket.io-client 4.8 clients through tether, for tests/example.rs, driven by
// commands on stdin and answering with one JSON line on stdout per command.
//   node test/swarm.js URL N        (NODE_EXTRA_CA_CERTS: the example's tls/ca.pem)
// Even clients keep cookies (withCredentials: AWSALB), odd ones keep none (the
// Engine.IO sid pins them); COOKIES=none or COOKIES=all makes them all alike. All
// reconnect (after 200 ms – 1 s) when disconnected.
// Commands:
//   status              {connected, perServer, connectErrors, unknownSid, transports}
//   broadcast           one client sends a message; waits (5 s) until every connected
//                       client has it: {from, fromServer, received, connected, missing}
//   stream MS | stop    a message every MS ms from a connected client (round robin)
//   mark                only messages acked from now on count in report (after a
//                       fault, once clients reconnected)
//   report             the history: {disconnects: [{c, server, reason, code, downMs}],
//                       missed: [...], sent, maxDownMs, stillDown}
"use strict";
const readline = require("readline");
const { io } = require("socket.io-client");

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg || 30);
const cookies = process.env.COOKIES || "mixed";
const started = Date.now();
const now = () => Date.now() - started;

let seq = 0;
let markAt = 0; // report counts messages acked after this time
const sentAt = new Map(); // seq → time the server acked it (it reached the adapter)
const clients = [];
let connectErrors = 0;
let unknownSid = 0;

for (let i = 0; i < n; i++) {
  const c = {
    i, server: null, connected: false, connectedAt: null, downSince: null,
    intervals: [], // [{from, to, server}]
    received: new Map(), // seq → time
    disconnects: [],
  };
  c.socket = io(url, {
    transports: ["polling", "websocket"],
    withCredentials: cookies === "all" || (cookies === "mixed" && i % 2 === 0),
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    timeout: 5000,
  });
  c.socket.on("welcome", ({ server }) => {
    c.server = server;
    c.connected = true;
    c.connectedAt = now();
    if (c.downSince !== null) {
      const d = c.disconnects[c.disconnects.length - 1];
      d.downMs = c.connectedAt - c.downSince;
      d.newServer = server;
      c.downSince = null;
    }
    c.intervals.push({ from: c.connectedAt, to: null, server });
    c.socket.emit("join", `bot-${i}`);
  });
  c.socket.on("disconnect", (reason, details) => {
    c.connected = false;
    c.downSince = now();
    const code = details && details.context && details.context.code;
    const last = c.intervals[c.intervals.length - 1];
    if (last) last.to = c.downSince;
    c.disconnects.push({ c: i, server: c.server, reason, code: code || null, at: c.downSince, downMs: null });
  });
  c.socket.on("connect_error", (err) => {
    connectErrors += 1;
    const text = `${err.message} ${JSON.stringify(err.context && err.context.responseText || "")}`;
    if (text.includes("Session ID unknown")) unknownSid += 1;
  });
  c.socket.on("chat", (m) => {
    if (typeof m.seq === "number" && !c.received.has(m.seq)) c.received.set(m.seq, now());
  });
  clients.push(c);
}

function connected() {
  return clients.filter((c) => c.connected);
}

function perServer() {
  const out = {};
  for (const c of connected()) out[c.server] = (out[c.server] || 0) + 1;
  return out;
}

let rr = 0;
async function sendOne() {
  const live = connected();
  if (live.length === 0) return null;
  const c = live[rr++ % live.length];
  const s = ++seq;
  try {
    const ack = await c.socket.timeout(3000).emitWithAck("chat", { text: `message ${s}`, seq: s });
    sentAt.set(s, now());
    return { seq: s, from: c.i, fromServer: ack.server };
  } catch (e) {
    return { seq: s, from: c.i, error: e.message };
  }
}

async function broadcast() {
  const sent = await sendOne();
  if (!sent || sent.error) return { error: sent ? sent.error : "no connected client" };
  const deadline = Date.now() + 5000;
  let missing = [];
  while (Date.now() < deadline) {
    missing = connected().filter((c) => !c.received.has(sent.seq)).map((c) => c.i);
    if (missing.length === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const received = connected().filter((c) => c.received.has(sent.seq));
  const receivedOn = {};
  for (const c of received) receivedOn[c.server] = (receivedOn[c.server] || 0) + 1;
  return { ...sent, received: received.length, receivedOn, connected: connected().length, missing };
}

// A message counts against a client when the server acked it while the client had
// been connected for 300 ms (its join went through) and stayed so for 2 s after.
function report() {
  const missed = [];
  const end = now();
  for (const c of clients) {
    for (const iv of c.intervals) {
      const to = iv.to === null ? end : iv.to;
      for (const [s, t] of sentAt) {
        if (t > markAt && t > iv.from + 300 && t < to - 2000 && !c.received.has(s)) {
          missed.push({ c: c.i, seq: s, server: iv.server });
        }
      }
    }
  }
  const disconnects = clients.flatMap((c) => c.disconnects);
  const downs = disconnects.map((d) => (d.downMs === null ? end - d.at : d.downMs));
  return {
    sent: sentAt.size,
    disconnects,
    maxDownMs: downs.length ? Math.max(...downs) : 0,
    stillDown: clients.filter((c) => !c.connected).map((c) => c.i),
    missed: missed.slice(0, 20),
    missedCount: missed.length,
  };
}

let streamTimer = null;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "status") {
    out({ connected: connected().length, perServer: perServer(), connectErrors, unknownSid,
      transports: connected().map((c) => c.socket.io.engine && c.socket.io.engine.transport.name) });
  } else if (cmd === "broadcast") {
    out(await broadcast());
  } else if (cmd === "stream") {
    clearInterval(streamTimer);
    streamTimer = setInterval(() => { sendOne(); }, Number(arg || 100));
    out({ streaming: true });
  } else if (cmd === "stop") {
    clearInterval(streamTimer);
    out({ streaming: false });
  } else if (cmd === "mark") {
    markAt = now();
    out({ markAt });
  } else if (cmd === "report") {
    out(report());
  } else {
    out({ error: `unknown command ${cmd}` });
  }
});
rl.on("close", () => process.exit(0));
