// A recording target for tests/differential.rs on Node's own `http` server (llhttp,
// what Socket.IO servers parse with), default options, no npm packages.
//   node recorder.js
// Prints "PORT <port>", then one JSON line per request it parsed, when its body
// ended (or failed):
//   {"t":"req","method","path","len","err","host","cookies"}
// `err` is null for a whole request, else the parse error (llhttp's code) or
// "aborted" (the connection closed mid-body). A head it refused:
//   {"t":"err","code","reason"}
// Each request is answered with the body "METHOD PATH LEN" and `x-recorder: node`.
// On stdin, "reset" destroys every connection, then prints {"t":"reset"}: what the
// connections left unfinished is printed before it.
"use strict";
const http = require("http");

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const sockets = new Set();

function cookieLines(raw) {
  const lines = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === "cookie") lines.push(raw[i + 1]);
  }
  return lines;
}

function record(req) {
  const rec = {
    t: "req",
    method: req.method,
    path: req.url,
    len: 0,
    err: null,
    host: req.headers.host === undefined ? null : req.headers.host,
    cookies: cookieLines(req.rawHeaders),
  };
  let done = false;
  rec.finish = (err) => {
    if (done) return;
    done = true;
    rec.err = err;
    if (req.socket && req.socket.current === rec) req.socket.current = null;
    const { finish, ...line } = rec;
    out(line);
  };
  req.socket.current = rec;
  return rec;
}

function answer(rec) {
  return `${rec.method} ${rec.path} ${rec.len}`;
}

// Node's default `requireHostHeader` answers 400 without telling the application:
// the same check is made here, so that the refusal is recorded.
const server = http.createServer({ requireHostHeader: false }, (req, res) => {
  const rec = record(req);
  if (req.httpVersion === "1.1" && req.headers.host === undefined) {
    rec.finish("HOST_REQUIRED");
    res.writeHead(400, { connection: "close", "content-length": 0 });
    res.end();
    return;
  }
  req.on("data", (chunk) => {
    rec.len += chunk.length;
  });
  req.on("error", (e) => rec.finish(e.code || "error"));
  req.on("close", () => {
    if (!req.complete) rec.finish("aborted");
  });
  req.on("end", () => {
    rec.finish(null);
    const body = answer(rec);
    res.setHeader("x-recorder", "node");
    res.setHeader("content-length", Buffer.byteLength(body));
    res.end(body);
  });
});

// CONNECT: recorded (what came after its head counts as its body) and refused.
server.on("connect", (req, socket, head) => {
  // The socket is the application's now, errors included.
  socket.on("error", () => {});
  const rec = record(req);
  rec.len = head.length;
  rec.finish(null);
  const body = answer(rec);
  socket.end(
    "HTTP/1.1 405 Method Not Allowed\r\nx-recorder: node\r\nconnection: close\r\n" +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
});

server.on("clientError", (err, socket) => {
  const code = err.code || "error";
  if (socket.current) {
    // A parse error in the body of a request already seen: that request's.
    socket.current.finish(code);
  } else if (code.startsWith("HPE_")) {
    out({ t: "err", code, reason: String(err.reason || err.message) });
  }
  if (socket.writable) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
  }
  socket.destroy();
});

server.on("connection", (socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
});

require("readline")
  .createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line.trim() !== "reset") return;
    const all = [...sockets];
    let left = all.length;
    const ack = () => setImmediate(() => out({ t: "reset" }));
    if (left === 0) return ack();
    for (const s of all) {
      s.once("close", () => {
        if (--left === 0) ack();
      });
      s.destroy();
    }
  });
process.stdin.on("end", () => process.exit(0));

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
