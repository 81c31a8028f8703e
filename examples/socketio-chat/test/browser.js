// The chat page in headless Chromium (Debian's /usr/bin/chromium, driven by
// puppeteer-core): two browser contexts (separate cookie jars) that land on
// different chat servers each send a message and must see the other's.
//   node test/browser.js URL       prints one JSON line
"use strict";
const puppeteer = require("puppeteer-core");

const url = process.argv[2];
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

async function open(browser, name) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.goto(`${url}?name=${name}`, { waitUntil: "load" });
  await page.waitForFunction(() => /^chat-\d+$/.test(document.getElementById("server").textContent), { timeout: 15000 });
  const server = await page.$eval("#server", (e) => e.textContent);
  return { name, page, server, context };
}

async function say(p, text) {
  await p.page.type("#text", text);
  await p.page.click("form button");
}

async function sees(p, text) {
  await p.page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes(t)),
    { timeout: 10000 }, text);
  return p.page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent));
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    acceptInsecureCerts: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const people = [];
    // New contexts have no cookie: round robin places them; keep two on different servers.
    for (let k = 0; k < 6 && new Set(people.map((p) => p.server)).size < 2; k++) {
      const p = await open(browser, `user${k}`);
      if (people.some((q) => q.server === p.server)) await p.context.close();
      else people.push(p);
    }
    if (people.length < 2) throw new Error(`no two contexts on different servers: ${people.map((p) => p.server)}`);
    const [a, b] = people;
    await say(a, `hello from ${a.name}`);
    await say(b, `hi from ${b.name}`);
    const aSees = await sees(a, `hi from ${b.name}`);
    const bSees = await sees(b, `hello from ${a.name}`);
    const participants = await a.page.$eval("#participants", (e) => e.textContent);
    await a.page.waitForFunction(() => !document.getElementById("api").textContent.endsWith("…"), { timeout: 10000 });
    const api = await a.page.$eval("#api", (e) => e.textContent);
    // After a reload the page is on the same server (the AWSALB cookie).
    await a.page.reload({ waitUntil: "load" });
    await a.page.waitForFunction(() => /^chat-\d+$/.test(document.getElementById("server").textContent), { timeout: 15000 });
    const afterReload = await a.page.$eval("#server", (e) => e.textContent);
    console.log(JSON.stringify({ ok: true, servers: [a.server, b.server], aSees, bSees, participants, api, afterReload }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  } finally {
    await browser.close();
  }
})();
