// tether's status page in headless Chromium (Debian's /usr/bin/chromium, driven by
// puppeteer-core from examples/socketio-chat/node_modules: NODE_PATH).
//   node page.js URL SCREENSHOT TARGET...
// 1. waits until every TARGET (ip:port) shows "healthy" and prints one JSON line;
// 2. reads a line on stdin (the test has stopped the first TARGET's backend), waits
//    until the first TARGET shows "unhealthy", saves SCREENSHOT, reads the second
//    TARGET's request rate and the third's open websockets, checks the page fits a
//    phone's width, and prints a second JSON line.
"use strict";
const puppeteer = require("puppeteer-core");

const [url, screenshot, ...targets] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

function states(page) {
  return page.$$eval("tr[data-target]", (rows) => rows.map((r) => ({
    group: r.closest("section").dataset.group,
    target: r.dataset.target,
    state: r.querySelector(".state").textContent,
    reason: r.querySelector('td[data-label="reason"]').textContent,
  })));
}

async function until(page, want, timeout) {
  await page.waitForFunction((want) => want.every(([target, state]) =>
    [...document.querySelectorAll(`tr[data-target="${target}"]`)].some((r) => r.dataset.state === state)),
    { timeout, polling: 200 }, want);
}

function line() {
  return new Promise((resolve) => process.stdin.once("data", resolve));
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 800 });
    await page.goto(url, { waitUntil: "load" });
    await until(page, targets.map((t) => [t, "healthy"]), 20000);
    const rules = await page.$$eval("section[data-listener] tbody tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ").trim()));
    console.log(JSON.stringify({ phase: 1, states: await states(page), rules }));
    await line();
    await until(page, [[targets[0], "unhealthy"]], 20000);
    const after = await states(page);
    // Two more refreshes so that the request rates show.
    const refreshed = await page.$eval("body", (b) => b.dataset.refreshed);
    await page.waitForFunction((r) => document.body.dataset.refreshed !== r, { timeout: 5000 }, refreshed);
    await page.screenshot({ path: screenshot, fullPage: true });
    const rate = await page.$eval(`tr[data-target="${targets[1]}"] td:last-child`, (td) => td.textContent);
    const websockets = await page.$eval(`tr[data-target="${targets[2]}"] td[data-label="websockets"]`, (td) => td.textContent);
    // isMobile reloads the page: wait for its first render.
    await page.setViewport({ width: 390, height: 844, isMobile: true, deviceScaleFactor: 2 });
    await page.waitForSelector("tr[data-target]", { timeout: 10000 });
    const phone = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      viewport: document.querySelector('meta[name="viewport"]')?.content,
      // Each target row as a card: its cells one under the other, full width.
      cellShare: Math.min(...[...document.querySelectorAll("tr[data-target] td")].map((td) =>
        td.getBoundingClientRect().width / td.closest("tr").getBoundingClientRect().width)),
    }));
    console.log(JSON.stringify({ phase: 2, states: after, rate, websockets, phone }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  } finally {
    await browser.close();
    process.stdin.destroy();
  }
})();
