// The live room page with two real Chromium participants, each in its own browser context (its
// own storage) with the fake camera and microphone: a teacher on a laptop-sized window and a
// classroom on a phone-sized one join /room/{room}#token=…, see and hear each other through the
// media server, chat over the data channel, see a mute, and the classroom's page is closed
// abruptly and reopened: it must get its place back (resumed, same identity) without the teacher
// ever seeing it leave. Both pages count the data they used, and the class's receive budget is
// accepted by the server and kept across the reopening.
//
// An administrator follows the room on /admin/rooms meanwhile.
//
//   BASE_URL=http://127.0.0.1:PORT ROOM=demo TOKEN_A=<teacher-li> TOKEN_B=<class-3>
//   ADMIN_USER=... ADMIN_PASSWORD=... [SCREENSHOT_DIR=...] node room.mjs
import { launchBrowser, check } from './chromium.mjs';

const env = (name) => {
  const v = process.env[name];
  check(v, `${name} must be set`);
  return v;
};
const base = env('BASE_URL');
const room = env('ROOM');
const tokenA = env('TOKEN_A');
const tokenB = env('TOKEN_B');
const adminUser = env('ADMIN_USER');
const adminPassword = env('ADMIN_PASSWORD');
const shots = process.env.SCREENSHOT_DIR;
const A = 'teacher-li';
const B = 'class-3';
const link = (token) => `${base}/room/${room}#token=${token}`;

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const log = [];
const note = (line) => log.push(`[${elapsed()}] ${line}`);

// The signalling frames each page sent and received, in order, as the wire carried them.
const wsFrames = new Map();
function recordFrames(page) {
  const frames = [];
  wsFrames.set(page, frames);
  page.on('websocket', (ws) => {
    const add = (dir) => ({ payload }) => {
      try {
        const m = JSON.parse(payload);
        frames.push({ dir, type: m.type, kbps: m.kbps, code: m.code, refused: m.refused });
      } catch { /* not a JSON frame */ }
    };
    ws.on('framesent', add('sent'));
    ws.on('framereceived', add('received'));
  });
}

// Waits (bounded) until `pred(frames)` holds for the frames of `page`; returns the frames.
async function framesUntil(page, what, pred, ms = 15000) {
  const frames = wsFrames.get(page);
  for (const deadline = Date.now() + ms; !pred(frames); await new Promise((r) => setTimeout(r, 100))) {
    check(Date.now() < deadline, `${what} (not within ${ms / 1000} s): last frames ${JSON.stringify(frames.slice(-15))}`);
  }
  note(`ok: ${what}`);
  return frames;
}

const sentBudget = (kbps) => (f) => f.dir === 'sent' && f.type === 'budget' && f.kbps === kbps;

// Collects what a page says, so a failure shows the browser's side of the story.
const consoleErrors = [];
function watch(page, name) {
  recordFrames(page);
  page.on('console', (m) => {
    note(`${name} console.${m.type()}: ${m.text()}`);
    // The admin's first /api/v1/me before login answers 401 by design (Chromium logs it).
    const expected = name === 'admin' && m.text().includes('status of 401');
    if (m.type() === 'error' && !expected) consoleErrors.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${name} page error: ${e}`));
  page.on('crash', () => consoleErrors.push(`${name} page crashed`));
  return page;
}

// What the page knows, for failure messages.
async function describe(page) {
  return page.evaluate(async () => {
    const r = window.tongxinRoom;
    if (!r) return { noRoom: true, body: document.body.innerText.slice(0, 300) };
    return {
      state: r.state, identity: r.identity, resumed: r.resumed, channel: r.channel,
      participants: r.participants, events: r.events.slice(-12), errors: r.errors, local: r.local,
      status: (document.getElementById('room-status') || {}).textContent,
      inbound: await r.stats().catch((e) => String(e)),
    };
  }).catch((e) => `(page not readable: ${e})`);
}

// Waits (bounded) until `fn(arg)` is truthy in the page; fails saying what did not happen.
async function waitUntil(page, what, fn, arg, ms = 30000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 250 });
  } catch (e) {
    check(false, `${what} (not within ${ms / 1000} s): ${String(e).split('\n')[0]}\npage state: ${JSON.stringify(await describe(page))}`);
  }
  note(`ok: ${what}`);
}

const frames = (page, identity) => page.evaluate((id) => window.tongxinRoom.frames(id), identity);

// The tile of `identity` shows its camera, and the frame count keeps rising by `more`.
async function videoRises(page, viewer, identity, more = 15, ms = 30000) {
  await waitUntil(page, `${viewer} has a tile for ${identity}`,
    (id) => document.querySelector(`.tile.remote[data-identity="${id}"] video[data-source="camera"]`), identity, ms);
  const before = Math.max(0, await frames(page, identity));
  await waitUntil(page, `${viewer} sees ${identity}'s camera video play (${before} frames, then ${more} more)`,
    ([id, n]) => window.tongxinRoom.frames(id) >= n, [identity, before + more], ms);
}

async function join(page, name, token, expectedName) {
  await page.goto(link(token), { timeout: 30000 });
  await page.waitForSelector('#join:not([disabled])', { timeout: 30000 });
  const pre = await page.evaluate(() => ({
    who: (document.querySelector('.prejoin .who') || {}).textContent || '',
    previewWidth: document.getElementById('preview').videoWidth,
    cameras: document.querySelectorAll('#camera-select option').length,
    mics: document.querySelectorAll('#mic-select option').length,
  }));
  note(`${name} pre-join: ${JSON.stringify(pre)}`);
  check(pre.who.includes(expectedName), `${name}'s pre-join check shows the name from the token (${expectedName}): ${pre.who}`);
  check(pre.cameras >= 1 && pre.mics >= 1, `${name}'s pre-join check lists a camera and a microphone: ${JSON.stringify(pre)}`);
  await waitUntil(page, `${name}'s camera preview plays`, () => document.getElementById('preview').videoWidth > 0);
  // The network check before joining finds the direct UDP path on loopback.
  await waitUntil(page, `${name}'s pre-join network check reports UDP`, () => document.getElementById('net-check').dataset.path === 'udp', null, 20000);
  await page.click('#join');
  await waitUntil(page, `${name} joined`, () => window.tongxinRoom.state === 'joined');
}

const box = (page, sel) => page.locator(sel).boundingBox();

// Small and slow camera: two cores run two encoders, two decoders and the SFU at once.
const browser = await launchBrowser(['--use-fake-device-for-media-stream=fps=15']);
try {
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const pageA = watch(await ctxA.newPage(), 'teacher');
  let pageB = watch(await ctxB.newPage(), 'class');

  // 1. Both join and each sees the other's camera.
  await join(pageA, 'teacher', tokenA, '李老师');
  await join(pageB, 'class', tokenB, '三年级（3）班');
  const idA = await pageA.evaluate(() => window.tongxinRoom.identity);
  check(idA === A, `the teacher's identity is ${A} (got ${idA})`);
  await videoRises(pageA, 'teacher', B);
  await videoRises(pageB, 'class', A);
  const nameOnB = await pageB.locator(`.tile.remote[data-identity="${A}"] .name [data-raw]`).textContent();
  check(nameOnB === '李老师', `the class sees the teacher's name on the tile (got ${nameOnB})`);
  const audioB = await pageB.evaluate((id) => {
    const a = document.querySelector(`.tile.remote[data-identity="${id}"] audio`);
    return a && a.srcObject ? a.srcObject.getAudioTracks().length : 0;
  }, A);
  check(audioB === 1, 'the teacher\'s microphone plays in the class\'s tile');
  await waitUntil(pageA, 'the teacher sees a connection-quality badge for the class',
    (id) => ['good', 'fair', 'poor', 'lost'].includes(document.querySelector(`.tile.remote[data-identity="${id}"] .quality`).dataset.quality), B, 15000);

  // Both pages count the data both their connections carry, and show it as a phone would.
  for (const [name, page] of [['teacher', pageA], ['class', pageB]]) {
    await waitUntil(page, `${name}'s page counts the data it used`, () => window.tongxinRoom.dataUsedBytes > 0, null, 10000);
    const used = await page.evaluate(() => window.tongxinRoom.dataUsedBytes);
    await waitUntil(page, `${name}'s data used grows past ${used} bytes`, (n) => window.tongxinRoom.dataUsedBytes > n, used, 10000);
    await waitUntil(page, `${name}'s page shows the data used`, () => {
      const b = window.tongxinRoom.dataUsedBytes;
      const amount = b < 1e6 ? `${Math.floor(b / 1e3)} KB` : `${(b / 1e6).toFixed(1)} MB`;
      return document.getElementById('data-used').textContent.includes(amount);
    }, null, 10000);
    // Loopback with a UDP candidate: the page names the path (the TURN and TCP cases are in paths.mjs).
    await waitUntil(page, `${name}'s page says the media goes over UDP`,
      () => document.getElementById('net-path').dataset.path === 'udp' && !document.getElementById('net-path').hidden, null, 10000);
  }

  // The class caps what it receives at 150 kbit/s; the server accepts it.
  check(await pageB.inputValue('#budget') === '', 'the class starts with no receive limit');
  await framesUntil(pageB, 'after joining, the class tells the server it has no receive limit',
    (fs) => fs.findIndex(sentBudget(null)) > fs.findIndex((f) => f.type === 'joined'));
  await pageB.selectOption('#budget', '150');
  // Quality reports come every 2 s: two after the budget mean the server has read it.
  const afterBudget = (fs) => fs.slice(fs.findIndex(sentBudget(150)));
  await framesUntil(pageB, 'the class sends its 150 kbit/s budget and the server carries on',
    (fs) => fs.some(sentBudget(150)) && afterBudget(fs).filter((f) => f.type === 'quality').length >= 2);
  const refused = afterBudget(wsFrames.get(pageB)).filter((f) => f.type === 'error');
  check(refused.length === 0, `the server refused the budget: ${JSON.stringify(refused)}`);
  check(await pageB.evaluate(() => window.tongxinRoom.errors.length) === 0, 'the class page saw no error after setting its budget');

  // The laptop shows the chat beside the video; the phone stacks them in one column.
  const [stageA, chatA, stageB, chatB] = [await box(pageA, '#stage'), await box(pageA, 'aside.chat'), await box(pageB, '#stage'), await box(pageB, 'aside.chat')];
  check(chatA.x >= stageA.x + stageA.width - 1, `on a laptop the chat is beside the stage (stage ${JSON.stringify(stageA)}, chat ${JSON.stringify(chatA)})`);
  check(chatB.y >= stageB.y + stageB.height - 1, `on a phone the chat is below the stage (stage ${JSON.stringify(stageB)}, chat ${JSON.stringify(chatB)})`);
  if (shots) {
    await pageA.screenshot({ path: `${shots}/room-teacher.png` });
    await pageB.screenshot({ path: `${shots}/room-class-phone.png`, fullPage: true });
  }

  // The administrator's rooms page lists both participants with their tracks and link quality.
  const ctxAdmin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const admin = watch(await ctxAdmin.newPage(), 'admin');
  await admin.goto(base, { timeout: 30000 });
  await admin.waitForSelector('input[name=username]', { timeout: 30000 });
  await admin.fill('input[name=username]', adminUser);
  await admin.fill('input[name=password]', adminPassword);
  await admin.click('form button[type=submit]');
  await admin.waitForSelector('nav.nav', { timeout: 30000 });
  await admin.click('a[href="/admin/rooms"]');
  const row = (id) => `.room-card[data-room="${room}"] tr[data-identity="${id}"]`;
  await waitUntil(admin, 'the admin rooms page lists both participants with camera and microphone',
    ([a, b]) => [a, b].every((sel) => document.querySelectorAll(`${sel} li[data-track]`).length === 2), [row(A), row(B)], 15000);
  await waitUntil(admin, 'the admin rooms page shows each participant\'s link quality',
    ([a, b]) => [a, b].every((sel) => document.querySelector(`${sel} .quality[data-quality]`)), [row(A), row(B)], 15000);

  // 2. Chat: the class writes, the teacher reads it with the sender's name.
  const text = '老师好！Can you hear us?';
  await waitUntil(pageB, 'the class\'s chat is connected', () => !document.getElementById('chat-send').disabled);
  await pageB.fill('#chat-input', text);
  await pageB.click('#chat-send');
  await waitUntil(pageA, 'the teacher receives the class\'s chat message',
    ([from, msg]) => [...document.querySelectorAll('#chat-log .chat-msg')].some((li) =>
      li.dataset.from === from && li.querySelector('.chat-text').textContent === msg), [B, text], 15000);
  const shown = await pageA.evaluate((from) => {
    const li = [...document.querySelectorAll('#chat-log .chat-msg')].find((x) => x.dataset.from === from);
    return li.querySelector('.chat-who').textContent;
  }, B);
  check(shown === '三年级（3）班', `the teacher sees the sender's name on the message (got ${shown})`);
  const ownLine = await pageB.evaluate(() => [...document.querySelectorAll('#chat-log .chat-msg[data-self="true"] .chat-text')].map((x) => x.textContent));
  check(ownLine.includes(text), `the class sees its own message too: ${JSON.stringify(ownLine)}`);

  // 3. The teacher mutes the microphone; the class sees it muted.
  const micSel = (id) => `.tile.remote[data-identity="${id}"] [data-role="mic-indicator"]`;
  check(await pageB.locator(micSel(A)).getAttribute('data-muted') === 'false', 'before muting, the class sees the teacher\'s microphone on');
  await pageA.click('#mute-mic');
  const localMic = await pageA.evaluate(() => window.tongxinRoom.local.tracks.find((x) => x.kind === 'audio'));
  check(localMic && localMic.enabled === false, `muting disables the local microphone track (${JSON.stringify(localMic)})`);
  await waitUntil(pageB, 'the class sees the teacher\'s microphone muted',
    (sel) => document.querySelector(sel).dataset.muted === 'true', micSel(A), 15000);
  await waitUntil(admin, 'the admin rooms page refreshes and shows the teacher\'s microphone muted',
    (sel) => [...document.querySelectorAll(`${sel} li[data-track]`)].some((li) => li.dataset.muted === 'true'), row(A), 15000);
  if (shots) await admin.screenshot({ path: `${shots}/admin-rooms.png` });
  await ctxAdmin.close();

  // 4. The class's page is closed abruptly (no leave) and the same link is opened again in the
  // same browser profile, within the grace period: same participant, resumed.
  const eventsBefore = (await pageA.evaluate(() => window.tongxinRoom.events)).length;
  await pageB.close({ runBeforeUnload: false });
  const closedAt = Date.now();
  note('the class page was closed without leaving');
  pageB = watch(await ctxB.newPage(), 'class (reopened)');
  await pageB.goto(link(tokenB), { timeout: 30000 });
  await waitUntil(pageB, 'the reopened class page joins again by itself', () => window.tongxinRoom && window.tongxinRoom.state === 'joined');
  const back = await pageB.evaluate(() => ({ identity: window.tongxinRoom.identity, resumed: window.tongxinRoom.resumed }));
  note(`the class is back after ${((Date.now() - closedAt) / 1000).toFixed(1)} s: ${JSON.stringify(back)}`);
  check(back.resumed === true, `the reopened page resumed its participant (resumed=${back.resumed})`);
  check(back.identity === B, `the reopened page is the same participant (${back.identity})`);
  await videoRises(pageA, 'teacher', B);
  await videoRises(pageB, 'class (reopened)', A);
  check(await pageB.inputValue('#budget') === '150', 'the reopened class page keeps its 150 kbit/s receive limit');
  await framesUntil(pageB, 'the reopened class page sends its budget again after joining',
    (fs) => fs.findIndex(sentBudget(150)) > fs.findIndex((f) => f.type === 'joined'));
  await waitUntil(pageB, 'the reopened class page sees the teacher still muted',
    (sel) => document.querySelector(sel) && document.querySelector(sel).dataset.muted === 'true', micSel(A), 15000);
  const seen = (await pageA.evaluate(() => window.tongxinRoom.events)).slice(eventsBefore);
  note(`the teacher's events meanwhile: ${JSON.stringify(seen.map((e) => `${e.type}:${e.identity || ''}`))}`);
  check(!seen.some((e) => e.type === 'participant_left' && e.identity === B),
    `the teacher never saw the class leave: ${JSON.stringify(seen)}`);
  check(Object.keys(await pageA.evaluate(() => window.tongxinRoom.participants)).includes(B), 'the class is still in the teacher\'s room');
  if (shots) await pageB.screenshot({ path: `${shots}/room-class-resumed.png`, fullPage: true });

  // The room page is translated and mirrored in Uyghur, without a reload.
  const before = await pageA.evaluate(() => Number(document.documentElement.dataset.renders || 0));
  await pageA.selectOption('#lang', 'ug');
  await pageA.waitForFunction((n) => document.documentElement.lang === 'ug' && Number(document.documentElement.dataset.renders) > n, before, { timeout: 15000 });
  check(await pageA.evaluate(() => document.documentElement.dir) === 'rtl', 'ug sets dir=rtl on the room page');
  const untranslated = await pageA.evaluate(() => {
    const bad = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.textContent.trim();
      if (!text) continue;
      const el = n.parentElement;
      if (el.closest('[data-raw]') || el.closest('option') || !el.getClientRects().length) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || style.display === 'none') continue;
      if (/[A-Za-z\u3400-\u9fff\u0f00-\u0fff]|\[[a-z_.]+\]/.test(text)) bad.push(text);
    }
    return bad;
  });
  check(untranslated.length === 0, `untranslated text on the room page in ug: ${JSON.stringify(untranslated)}`);
  check(await frames(pageA, B) > 0, 'switching the language keeps the videos playing');
  if (shots) await pageA.screenshot({ path: `${shots}/room-teacher-ug.png` });

  // Leaving: the teacher's page forgets its resume credential, the class sees the teacher go.
  await pageA.click('#leave');
  await waitUntil(pageA, 'the teacher\'s page shows that it left', () => window.tongxinRoom.state === 'left' && document.getElementById('rejoin'));
  check(await pageA.evaluate((r) => localStorage.getItem(`tongxin.resume.${r}`), room) === null, 'leaving removes the stored resume credential');
  await waitUntil(pageB, 'the class sees the teacher leave',
    (id) => window.tongxinRoom.events.some((e) => e.type === 'participant_left' && e.identity === id && e.reason === 'left') &&
      !document.querySelector(`.tile.remote[data-identity="${id}"]`), A, 15000);

  for (const [name, page] of [['teacher', pageA], ['class', pageB]]) {
    const errors = await page.evaluate(() => window.tongxinRoom.errors);
    check(errors.length === 0, `the server answered ${name}'s frames with errors: ${JSON.stringify(errors)}`);
  }
  check(consoleErrors.length === 0, `browser console errors: ${JSON.stringify(consoleErrors)}`);
  console.log(log.join('\n'));
  console.log(`room: ok in ${elapsed()}`);
} catch (e) {
  console.error(log.join('\n'));
  throw e;
} finally {
  await browser.close();
}
