// N socket.io-client 4.8 clients through tether; prints one JSON summary line.
//   node clients.js URL N MODE CREDENTIALS [ROUNDS] [INTERVAL_MS]
// MODE: "default" (polling, then upgrade to websocket) or "polling" (polling only).
// CREDENTIALS: "true" keeps cookies (engine.io-client's cookie jar), "false" keeps none.
// Each client connects, remembers the server that greeted it, then makes ROUNDS
// acknowledged round trips INTERVAL_MS apart; every answer must come from that server.
"use strict";
const { io } = require("socket.io-client");

const [url, nArg, mode, credArg, roundsArg, intervalArg] = process.argv.slice(2);
const n = Number(nArg || 10);
const rounds = Number(roundsArg || 20);
const interval = Number(intervalArg || 160);
const withCredentials = credArg === "true";
const transports = mode === "polling" ? ["polling"] : ["polling", "websocket"];
const deadlineMs = 60000;

function runClient(i) {
  return new Promise((resolve) => {
    const result = { i, ok: false, server: null, upgraded: false, error: null, servers: [] };
    const socket = io(url, {
      transports,
      withCredentials,
      reconnection: false,
      forceNew: true,
      timeout: 10000,
    });
    const finish = (error) => {
      if (result.done) return;
      result.done = true;
      result.error = error || null;
      result.ok = !error;
      result.upgraded = socket.io.engine ? socket.io.engine.transport.name === "websocket" : false;
      socket.close();
      delete result.done;
      resolve(result);
    };
    const timer = setTimeout(() => finish("timeout"), deadlineMs);
    socket.io.on("open", () => {
      socket.io.engine.on("upgradeError", (err) => {
        result.upgradeError = `${err.message}${err.description ? ` (${err.description.message || err.description})` : ""}`;
      });
    });
    socket.on("connect_error", (err) => { clearTimeout(timer); finish(`connect_error: ${err.message}`); });
    socket.on("disconnect", (reason) => { clearTimeout(timer); finish(`disconnect: ${reason}`); });
    socket.on("hello", async ({ id }) => {
      result.server = id;
      try {
        for (let r = 0; r < rounds; r++) {
          const answer = await socket.timeout(5000).emitWithAck("whoami", r);
          result.servers.push(answer.id);
          if (answer.id !== id) {
            clearTimeout(timer);
            return finish(`round ${r} answered by ${answer.id}, not ${id}`);
          }
          await new Promise((r2) => setTimeout(r2, interval));
        }
        // In default mode the client must upgrade to a websocket (a loaded machine
        // may take longer than the round trips: wait for it, within a bound).
        if (mode !== "polling" && socket.io.engine.transport.name !== "websocket") {
          const upgraded = await new Promise((res) => {
            const t = setTimeout(() => res(false), 10000);
            socket.io.engine.once("upgrade", () => { clearTimeout(t); res(true); });
          });
          if (!upgraded) {
            clearTimeout(timer);
            return finish(`never upgraded to websocket${result.upgradeError ? `: ${result.upgradeError}` : ""}`);
          }
          // One more round trip over the websocket, still on the same server.
          const answer = await socket.timeout(5000).emitWithAck("whoami", rounds);
          if (answer.id !== id) {
            clearTimeout(timer);
            return finish(`after the upgrade answered by ${answer.id}, not ${id}`);
          }
        }
        clearTimeout(timer);
        finish(null);
      } catch (e) {
        clearTimeout(timer);
        finish(`round trip failed: ${e.message}`);
      }
    });
  });
}

(async () => {
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => runClient(i)));
  const perServer = {};
  for (const r of results) if (r.ok) perServer[r.server] = (perServer[r.server] || 0) + 1;
  const failures = results.filter((r) => !r.ok);
  console.log(JSON.stringify({
    clients: n,
    ok: results.length - failures.length,
    failed: failures.length,
    upgraded: results.filter((r) => r.ok && r.upgraded).length,
    perServer,
    errors: failures.slice(0, 5).map((r) => r.error),
    seconds: (Date.now() - started) / 1000,
  }));
  process.exit(0);
})();
