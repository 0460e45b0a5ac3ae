// A Chromium WHEP player on a weak link. The Rust test (sfu/tests/it/serial/weak_link.rs) starts
// Chromium inside a network namespace (CHROMIUM is a wrapper running `ip netns exec`), serves the
// player page and changes the link while this script runs; the script only loads the page and
// prints the player's getStats() once a second, one `SAMPLE {json}` line each, for SECONDS.
//
//   PAGE=http://10.199.x.1:P/?whep=…&token=…&media=…&relay=… CHROMIUM=/tmp/…/chromium-in-ns SECONDS=70 node weak_link.mjs
import { launchBrowser, check } from './chromium.mjs';

const page_url = process.env.PAGE;
const seconds = Number(process.env.SECONDS || '60');
check(page_url, 'PAGE must be set');
check(process.env.CHROMIUM, 'CHROMIUM (the namespace wrapper) must be set');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`page console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`page error: ${e}`));
  await page.goto(page_url, { timeout: 30000 });
  const r = await page.evaluate(() =>
    window.started.then((v) => ({ ok: true, v }), (e) => ({ ok: false, e: String(e && e.stack || e) })));
  check(r.ok, `player set-up failed: ${r.e}`);
  const t0 = Date.now();
  while (Date.now() - t0 < seconds * 1000) {
    const s = await page.evaluate(() => window.sample());
    console.log(`SAMPLE ${JSON.stringify({ t: (Date.now() - t0) / 1000, ...s })}`);
    await sleep(1000);
  }
  const status = await page.evaluate(() => window.stop());
  console.error(`DELETE answered ${status}`);
} finally {
  await browser.close();
}
