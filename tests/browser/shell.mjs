// The web shell in a real browser: a teacher logs in, switches to Uyghur, and the page must be
// fully translated and mirrored; the choice must survive a reload (it is stored per user).
//
//   BASE_URL=http://127.0.0.1:PORT USERNAME=... PASSWORD=... [SCREENSHOT_DIR=...] node shell.mjs
import { launch, check } from './chromium.mjs';

const base = process.env.BASE_URL;
const username = process.env.USERNAME;
const password = process.env.PASSWORD;
const shots = process.env.SCREENSHOT_DIR;
check(base && username && password, 'BASE_URL, USERNAME and PASSWORD must be set');

const ctx = await launch();
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  const consoleErrors = [];
  // The first /api/v1/me before login answers 401 by design; Chromium reports that as a console
  // error. Any other error (a failed script, a missing translation) fails the test.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().includes('status of 401')) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(base);
  await page.waitForSelector('input[name=username]', { timeout: 30000 });
  check(await page.evaluate(() => document.documentElement.lang) === 'zh-CN', 'the login page starts in zh-CN');
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('form button[type=submit]');
  await page.waitForSelector('nav.nav', { timeout: 30000 });
  check(await page.locator('[data-role=teacher]').count() === 1, 'the teacher home page is shown');

  // Switches the language in the navigation and waits until the page has been redrawn in it.
  const switchTo = async (tag) => {
    const before = await page.evaluate(() => Number(document.documentElement.dataset.renders || 0));
    await page.selectOption('#lang', tag);
    await page.waitForFunction(([t, n]) => document.documentElement.lang === t &&
      Number(document.documentElement.dataset.renders || 0) > n, [tag, before], { timeout: 30000 });
  };
  // Start from zh-CN whatever the account had (makes the script safe to re-run by hand).
  if (await page.evaluate(() => document.documentElement.lang) !== 'zh-CN') await switchTo('zh-CN');
  const navBox = () => page.locator('nav.nav').boundingBox();
  const mainBox = () => page.locator('main').boundingBox();
  const ltrNav = await navBox();
  const ltrMain = await mainBox();
  check(ltrNav.x < 10 && ltrMain.x > ltrNav.x, `in zh-CN the navigation is on the left (nav x=${ltrNav.x}, main x=${ltrMain.x})`);
  if (shots) await page.screenshot({ path: `${shots}/shell-zh-CN.png` });

  await switchTo('ug');
  check(await page.evaluate(() => document.documentElement.dir) === 'rtl', 'ug sets dir=rtl');

  const width = page.viewportSize().width;
  const rtlNav = await navBox();
  const rtlMain = await mainBox();
  check(rtlNav.x + rtlNav.width > width - 10, `in ug the navigation sits at the right edge (x=${rtlNav.x}, w=${rtlNav.width}, viewport ${width})`);
  check(rtlMain.x < rtlNav.x, `in ug the content is left of the navigation (main x=${rtlMain.x}, nav x=${rtlNav.x})`);
  const brand = await page.locator('nav .brand img').boundingBox();
  const brandText = await page.locator('nav .brand span').boundingBox();
  check(brand.x > brandText.x, 'in ug the logo comes first on the right, before its text');
  if (shots) await page.screenshot({ path: `${shots}/shell-ug.png` });

  // Every visible text node must be Uyghur (Arabic script), digits or punctuation. User data
  // (marked data-raw) and language names (marked with their own lang) are not ours to translate.
  const untranslated = await page.evaluate(() => {
    const bad = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.textContent.trim();
      if (!text) continue;
      const el = n.parentElement;
      if (el.closest('[data-raw]')) continue;
      const langEl = el.closest('[lang]');
      if (langEl && langEl !== document.documentElement && langEl.lang !== 'ug') continue;
      if (el.closest('option') || !el.getClientRects().length) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || style.display === 'none') continue;
      if (/[A-Za-z\u3400-\u9fff\u0f00-\u0fff]|\[[a-z_.]+\]/.test(text)) bad.push(text);
    }
    return bad;
  });
  check(untranslated.length === 0, `untranslated text in ug: ${JSON.stringify(untranslated)}`);
  check(await page.title() === 'تۇڭشىن', `the page title is translated (got ${await page.title()})`);

  // The choice is stored with the account: a fresh load still shows ug.
  await page.evaluate(() => localStorage.clear());
  await page.reload();
  await page.waitForSelector('nav.nav', { timeout: 30000 });
  await page.waitForFunction(() => document.documentElement.lang === 'ug', null, { timeout: 30000 });

  // Logging out returns to a translated login page.
  await page.click('#logout');
  await page.waitForSelector('input[name=username]', { timeout: 30000 });
  check(await page.evaluate(() => document.documentElement.dir) === 'rtl', 'the login page after logout stays in ug');

  check(consoleErrors.length === 0, `browser console errors: ${JSON.stringify(consoleErrors)}`);
  console.log('shell: ok');
} finally {
  await ctx.close();
}
