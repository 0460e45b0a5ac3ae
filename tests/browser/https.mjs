// HTTPS on a name that is not localhost: Chromium must treat the page as a secure context, so a
// teacher gets camera and microphone, and the login cookie must be Secure.
//
//   BASE_URL=https://school.tongxin.test:PORT SPKI=<base64 sha256 of the leaf's public key>
//   USERNAME=... PASSWORD=... node https.mjs
import { launchBrowser, check } from './chromium.mjs';

const base = process.env.BASE_URL;
const spki = process.env.SPKI;
const username = process.env.USERNAME;
const password = process.env.PASSWORD;
check(base && spki && username && password, 'BASE_URL, SPKI, USERNAME and PASSWORD must be set');
const host = new URL(base).hostname;

// The name resolves to loopback inside this Chromium only, and the test certificate (from a
// throwaway CA) is trusted by its public key, so nothing is accepted that a real one would not be.
const browser = await launchBrowser([
  `--host-resolver-rules=MAP ${host} 127.0.0.1`,
  `--ignore-certificate-errors-spki-list=${spki}`,
]);
try {
  const ctx = await browser.newContext({ locale: 'en' });
  const page = await ctx.newPage();
  const res = await page.goto(base);
  check(res && res.ok(), `the shell loads over HTTPS from ${base} (status ${res && res.status()})`);
  const origin = await page.evaluate(() => ({ protocol: location.protocol, host: location.hostname, secure: window.isSecureContext }));
  check(origin.protocol === 'https:' && origin.host === host, `served as https://${host}: ${JSON.stringify(origin)}`);
  check(origin.secure, 'the page is a secure context');
  const tracks = await page.evaluate(async () => {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    const live = stream.getTracks().map((t) => `${t.kind}:${t.readyState}`).sort();
    for (const t of stream.getTracks()) t.stop();
    return live;
  });
  check(JSON.stringify(tracks) === JSON.stringify(['audio:live', 'video:live']), `camera and microphone granted: ${tracks}`);
  console.log(`ok: ${host} is a secure context; getUserMedia gave ${tracks.join(', ')}`);

  await page.waitForSelector('input[name=username]', { timeout: 30000 });
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('form button[type=submit]');
  await page.waitForSelector('nav.nav', { timeout: 30000 });
  const cookies = await ctx.cookies(base);
  check(cookies.length > 0 && cookies.every((c) => c.secure && c.httpOnly), `session cookies are Secure and HttpOnly: ${JSON.stringify(cookies.map((c) => [c.name, c.secure, c.httpOnly]))}`);
  console.log('ok: logged in over HTTPS with a Secure session cookie');
} finally {
  await browser.close();
}
