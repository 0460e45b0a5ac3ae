// A live lesson in one Chromium with three browser contexts (each its own cookies and a small,
// slow fake camera): the teacher and two classroom terminals (device accounts of sites A and B)
// log in on / and open /lesson/{id}. The teacher sees both classrooms' cameras; B never receives
// A's video until A, having raised its hand, is brought on stage by the teacher, and then B shows
// it; a page turn reaches both terminals; B's page is closed abruptly and reopened and is live
// again within 10 s; the teacher ends the lesson and both terminals say so.
//
//   BASE_URL=http://127.0.0.1:PORT LESSON=<id> SITE_A=<id> SITE_B=<id> TEACHER_ID=<user id>
//   TEACHER_USER=… TERMINAL_A_USER=… TERMINAL_B_USER=… PASSWORD=… [SCREENSHOT_DIR=…] node lesson.mjs
import { launchBrowser, check } from './chromium.mjs';

const env = (name) => {
  const v = process.env[name];
  check(v, `${name} must be set`);
  return v;
};
const base = env('BASE_URL');
const lesson = env('LESSON');
const siteA = env('SITE_A');
const siteB = env('SITE_B');
const teacherIdentity = `teacher:${env('TEACHER_ID')}`;
const password = env('PASSWORD');
const users = { teacher: env('TEACHER_USER'), A: env('TERMINAL_A_USER'), B: env('TERMINAL_B_USER') };
const shots = process.env.SCREENSHOT_DIR;
const classA = `classroom:${siteA}`;
const classB = `classroom:${siteB}`;

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const log = [];
const note = (line) => log.push(`[${elapsed()}] ${line}`);

const consoleErrors = [];
function watch(page, name) {
  page.on('console', (m) => {
    note(`${name} console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error' && !m.text().includes('status of 401')) consoleErrors.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${name} page error: ${e}`));
  page.on('crash', () => consoleErrors.push(`${name} page crashed`));
  return page;
}

// What the lesson page knows, for failure messages.
async function describe(page) {
  return page.evaluate(async () => {
    const l = window.tongxinLesson;
    const view = document.getElementById('lesson-view');
    if (!l) return { noLesson: true, body: document.body.innerText.slice(0, 300) };
    const c = l.client;
    return {
      role: l.role, phase: view && view.dataset.state, state: l.state, decks: l.decks, connection: l.connection,
      client: c && { state: c.state, identity: c.identity, participants: [...c.participants.keys()] },
      inbound: c ? await c.inboundStats().catch((e) => String(e)) : null,
      status: (document.getElementById('lesson-status') || {}).textContent,
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

const playedFrames = (page, sel) => page.evaluate((s) => {
  const v = document.querySelector(s);
  return v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : -1;
}, sel);

// The <video> at `sel` plays: it has a size, and its frame count rises by `more`.
async function videoPlays(page, what, sel, more = 5, ms = 30000) {
  await waitUntil(page, `${what}: the video has a picture`, (s) => {
    const v = document.querySelector(s);
    return v && v.videoWidth > 0;
  }, sel, ms);
  const before = await playedFrames(page, sel);
  await waitUntil(page, `${what}: the video plays (${before} frames, then ${more} more)`, ([s, n]) => {
    const v = document.querySelector(s);
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames >= n;
  }, [sel, before + more], ms);
}

// Frames decoded on the page's subscriber connection from `owner`'s video.
const decodedFrom = (page, owner) => page.evaluate(async (o) => {
  const c = window.tongxinLesson.client;
  if (!c) return 0;
  const stats = await c.inboundStats();
  return stats.filter((s) => s.kind === 'video' && s.owner === o).reduce((n, s) => n + (s.framesDecoded || 0), 0);
}, owner);

async function decodedRises(page, what, owner, more = 10, ms = 30000) {
  const before = await decodedFrom(page, owner);
  await waitUntil(page, `${what} (${before} frames decoded, then ${more} more)`, async ([o, n]) => {
    const c = window.tongxinLesson.client;
    if (!c) return false;
    const stats = await c.inboundStats();
    return stats.filter((s) => s.kind === 'video' && s.owner === o).reduce((k, s) => k + (s.framesDecoded || 0), 0) >= n;
  }, [owner, before + more], ms);
}

async function login(page, name, username) {
  await page.goto(base, { timeout: 30000 });
  await page.waitForSelector('input[name=username]', { timeout: 30000 });
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login'), { timeout: 30000 }),
    page.click('form button[type=submit]'),
  ]);
  check(res.status() === 200, `${name} logs in as ${username} (status ${res.status()})`);
  note(`ok: ${name} logged in`);
}

async function openLesson(page, name, role, ms = 30000) {
  await page.goto(`${base}/lesson/${lesson}`, { timeout: 30000 });
  await waitUntil(page, `${name} is live in the lesson as ${role}`, (r) => {
    const v = document.getElementById('lesson-view');
    const l = window.tongxinLesson;
    return v && v.dataset.role === r && v.dataset.state === 'live' && l && l.client && l.client.state === 'joined';
  }, role, ms);
}

const slideShows = (page, name, n) => waitUntil(page, `${name} shows slide page ${n}`,
  (p) => { const img = document.querySelector(`#slide img[data-page="${p}"]`); return img && !img.hidden; }, n, 15000);

// Small and slow cameras: three encoders, their decoders and the SFU share two cores.
const browser = await launchBrowser(['--use-fake-device-for-media-stream=fps=10']);
try {
  const ctxT = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'zh-CN' });
  const ctxA = await browser.newContext({ viewport: { width: 960, height: 540 }, locale: 'zh-CN' });
  const ctxB = await browser.newContext({ viewport: { width: 960, height: 540 }, locale: 'zh-CN' });
  const teacher = watch(await ctxT.newPage(), 'teacher');
  const termA = watch(await ctxA.newPage(), 'A');
  let termB = watch(await ctxB.newPage(), 'B');

  // 1. Everyone logs in and opens the lesson.
  await login(teacher, 'teacher', users.teacher);
  await openLesson(teacher, 'the teacher', 'teacher');
  await login(termA, 'terminal A', users.A);
  await openLesson(termA, 'terminal A', 'classroom');
  await login(termB, 'terminal B', users.B);
  await openLesson(termB, 'terminal B', 'classroom');

  // 2. The teacher sees both classrooms; each terminal sees the teacher.
  await videoPlays(teacher, 'the teacher sees classroom A', `.site-tile[data-site="${siteA}"] video`);
  await videoPlays(teacher, 'the teacher sees classroom B', `.site-tile[data-site="${siteB}"] video`);
  await videoPlays(termA, 'terminal A sees the teacher', '#teacher-video');
  await videoPlays(termB, 'terminal B sees the teacher', '#teacher-video');

  // 3. Before any staging, B receives no video but the teacher's (A publishes all along).
  const notA = await termB.evaluate(async (t) => {
    const stats = await window.tongxinLesson.client.inboundStats();
    return stats.filter((s) => s.kind === 'video' && (s.packetsReceived || 0) > 0 && s.owner !== t);
  }, teacherIdentity);
  check(notA.length === 0, `before staging, terminal B receives only the teacher's video: ${JSON.stringify(notA)}`);
  check(await decodedFrom(termB, classA) === 0, 'before staging, terminal B decodes no frame of classroom A');
  note('ok: terminal B receives no classroom video before staging');

  // 4. A raises its hand; the teacher sees it queued and brings A on stage.
  await termA.click('#hand');
  await waitUntil(termA, 'terminal A shows its hand raised', () => document.getElementById('hand').dataset.raised === 'true', null, 10000);
  await waitUntil(teacher, 'the teacher sees A in the hand queue', (id) => document.querySelector(`#hand-queue li[data-site="${id}"]`), siteA, 10000);
  await teacher.click(`button[data-hand-stage="${siteA}"]`);
  await waitUntil(teacher, 'the teacher sees A on stage', (id) => window.tongxinLesson.state.stage === id, siteA, 10000);
  await waitUntil(termA, 'terminal A knows it is on stage', () => !document.getElementById('on-stage').hidden, null, 10000);
  await waitUntil(termB, 'terminal B knows A is on stage', (id) => window.tongxinLesson.state.stage === id, siteA, 10000);
  await decodedRises(termB, 'terminal B decodes classroom A\'s video', classA);
  await videoPlays(termB, 'terminal B shows A on stage', '#stage-video');

  // 5. Slides: the first "next" shows the deck's first page, the second turns to page 1.
  await teacher.click('#next-page');
  await slideShows(teacher, 'the teacher', 0);
  await teacher.click('#next-page');
  await slideShows(teacher, 'the teacher', 1);
  await slideShows(termA, 'terminal A', 1);
  await slideShows(termB, 'terminal B', 1);
  if (shots) {
    await teacher.screenshot({ path: `${shots}/lesson-teacher.png` });
    await termB.screenshot({ path: `${shots}/lesson-terminal-b.png` });
  }

  // 6. B's page is closed abruptly (no leave); a new page is live again within 10 s.
  await termB.close({ runBeforeUnload: false });
  const closedAt = Date.now();
  note('terminal B\'s page was closed without leaving');
  termB = watch(await ctxB.newPage(), 'B2');
  await openLesson(termB, 'terminal B (reopened)', 'classroom', 10000 - (Date.now() - closedAt));
  note(`terminal B is back after ${((Date.now() - closedAt) / 1000).toFixed(1)} s`);
  await slideShows(termB, 'terminal B (reopened)', 1);
  await waitUntil(termB, 'terminal B (reopened) knows A is on stage', (id) => window.tongxinLesson.state.stage === id, siteA, 10000);

  // 7. The teacher ends the lesson; everyone sees it ended.
  await teacher.click('#end-lesson');
  await teacher.waitForSelector('#end-lesson-confirm', { state: 'visible', timeout: 5000 });
  await teacher.click('#end-lesson-confirm');
  await waitUntil(teacher, 'the teacher sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);
  await waitUntil(termA, 'terminal A sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);
  await waitUntil(termB, 'terminal B sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);

  check(consoleErrors.length === 0, `no errors in the pages: ${consoleErrors.join('\n')}`);
  note('PASS');
} catch (e) {
  process.exitCode = 1;
  note(`error: ${e && e.stack}`);
} finally {
  await browser.close().catch(() => {});
  console.log(log.join('\n'));
}
