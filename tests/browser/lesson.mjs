// A live lesson in one Chromium with four browser contexts (each its own cookies; the cameras
// are small, slow fakes): the teacher and two classroom terminals (device accounts of sites A and
// B) log in on / and open /lesson/{id}; a student opens their personal link /l#{secret} on a
// phone-sized screen. The teacher sees both classrooms' cameras; B never receives A's video until
// A, having raised its hand, is brought on stage by the teacher, and then B shows it. The student
// joins late without being asked for a camera or microphone (getUserMedia is never called), gets
// the slide shown from the join state and the next one live, decodes the teacher's and the staged
// classroom's video and nothing of the classroom off stage. B's page is closed abruptly and
// reopened and is live again within 10 s; the teacher ends the lesson and everyone is told. The
// link's secret never appears in a request path, and an old-style /l/{secret} address is
// rewritten to the fragment form and shows the course's lessons.
//
//   BASE_URL=http://127.0.0.1:PORT LESSON=<id> SITE_A=<id> SITE_B=<id> TEACHER_ID=<user id>
//   TEACHER_USER=… TERMINAL_A_USER=… TERMINAL_B_USER=… PASSWORD=… STUDENT_LINK=<url the API gave>
//   [SCREENSHOT_DIR=…] node lesson.mjs
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
// The API hands out /l#{secret} (older servers /l/{secret}); the page is opened in the fragment
// form the management page shows and copies.
const secret = env('STUDENT_LINK').replace(/^\/l[/#]/, '');
check(/^[A-Za-z0-9_-]{20,}$/.test(secret), `the student link carries a secret: ${env('STUDENT_LINK')}`);

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

// Waits until the page has decoded `more` further frames of `owner`'s video. Polled from here:
// waitForFunction does not await an async predicate (its promise counts as true at once).
async function decodedRises(page, what, owner, more = 10, ms = 30000) {
  const before = await decodedFrom(page, owner);
  const until = Date.now() + ms;
  let now = before;
  while (now < before + more) {
    if (Date.now() > until) {
      check(false, `${what}: ${before} frames decoded, then only ${now} within ${ms / 1000} s\npage state: ${JSON.stringify(await describe(page))}`);
    }
    await new Promise((r) => setTimeout(r, 250));
    now = await decodedFrom(page, owner);
  }
  note(`ok: ${what} (${before}, then ${now} frames decoded)`);
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

// Counts the page's calls of getUserMedia (each new document starts again from 0).
const countMediaRequests = (ctx) => ctx.addInitScript(() => {
  window.tongxinMediaRequests = 0;
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = (...args) => {
    window.tongxinMediaRequests += 1;
    return real(...args);
  };
});
const mediaRequests = (page) => page.evaluate(() => window.tongxinMediaRequests);

// Video received on the page's subscriber connection from anyone but `allowed`.
const videoFromOthers = (page, allowed) => page.evaluate(async (ok) => {
  const stats = await window.tongxinLesson.client.inboundStats();
  return stats.filter((s) => s.kind === 'video' && (s.packetsReceived || 0) > 0 && !ok.includes(s.owner));
}, allowed);

// Small and slow cameras: three encoders, their decoders and the SFU share two cores.
const browser = await launchBrowser(['--use-fake-device-for-media-stream=fps=10']);
try {
  const ctxT = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'zh-CN' });
  const ctxA = await browser.newContext({ viewport: { width: 960, height: 540 }, locale: 'zh-CN' });
  const ctxB = await browser.newContext({ viewport: { width: 960, height: 540 }, locale: 'zh-CN' });
  // A phone: the student's personal link needs no login.
  const ctxS = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN',
  });
  for (const ctx of [ctxT, ctxA, ctxS]) await countMediaRequests(ctx);
  // Request paths and queries (what logs, proxies and Referer headers see) that carry the secret.
  const secretSent = [];
  ctxS.on('request', (r) => {
    const u = new URL(r.url());
    u.hash = '';
    if (u.href.includes(secret)) secretSent.push(`${r.method()} ${u.pathname}`);
  });
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
  const notA = await videoFromOthers(termB, [teacherIdentity]);
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

  // 5. Slides: the first "next" shows the deck's first page.
  await teacher.click('#next-page');
  await slideShows(teacher, 'the teacher', 0);

  // 6. The student opens their link on the phone, late: the join state brings page 0 and the
  // stage; the page never asks for a camera or microphone.
  const student = watch(await ctxS.newPage(), 'student');
  await student.goto(`${base}/l#${secret}`, { timeout: 30000 });
  await waitUntil(student, 'the student is live in the lesson', () => {
    const v = document.getElementById('lesson-view');
    const l = window.tongxinLesson;
    return v && v.dataset.role === 'student' && v.dataset.state === 'live' && l && l.client && l.client.state === 'joined';
  }, null, 15000);
  await waitUntil(student, 'the student shows slide page 0 from the join state', () => {
    const img = document.querySelector('#slide img[data-page="0"]');
    return img && !img.hidden && img.complete && img.naturalWidth > 0;
  }, null, 15000);

  // The second "next" turns to page 1 everywhere, the student's phone included.
  await teacher.click('#next-page');
  await slideShows(teacher, 'the teacher', 1);
  await slideShows(termA, 'terminal A', 1);
  await slideShows(termB, 'terminal B', 1);
  await slideShows(student, 'the student', 1);

  // The student sees the teacher and the classroom on stage, and never B, which is off stage.
  await Promise.all([
    decodedRises(student, 'the student decodes the teacher\'s video', teacherIdentity),
    decodedRises(student, 'the student decodes classroom A\'s video (on stage)', classA),
  ]);
  await videoPlays(student, 'the student shows the teacher', '#teacher-video', 3);
  const fromB = await videoFromOthers(student, [teacherIdentity, classA]);
  check(fromB.length === 0, `the student receives no video of classroom B (off stage): ${JSON.stringify(fromB)}`);
  check(await decodedFrom(student, classB) === 0, 'the student decodes no frame of classroom B');
  note(`ok: the student decoded ${await decodedFrom(student, teacherIdentity)} frames of the teacher, `
    + `${await decodedFrom(student, classA)} of A on stage, 0 of B off stage`);
  if (shots) {
    await teacher.screenshot({ path: `${shots}/lesson-teacher.png` });
    await termB.screenshot({ path: `${shots}/lesson-terminal-b.png` });
    await student.screenshot({ path: `${shots}/lesson-student-phone.png` });
  }

  // 7. B's page is closed abruptly (no leave); a new page is live again within 10 s.
  await termB.close({ runBeforeUnload: false });
  const closedAt = Date.now();
  note('terminal B\'s page was closed without leaving');
  termB = watch(await ctxB.newPage(), 'B2');
  await openLesson(termB, 'terminal B (reopened)', 'classroom', 10000 - (Date.now() - closedAt));
  note(`terminal B is back after ${((Date.now() - closedAt) / 1000).toFixed(1)} s`);
  await slideShows(termB, 'terminal B (reopened)', 1);
  await waitUntil(termB, 'terminal B (reopened) knows A is on stage', (id) => window.tongxinLesson.state.stage === id, siteA, 10000);

  // 8. The teacher ends the lesson; everyone sees it ended.
  await teacher.click('#end-lesson');
  await teacher.waitForSelector('#end-lesson-confirm', { state: 'visible', timeout: 5000 });
  await teacher.click('#end-lesson-confirm');
  await waitUntil(teacher, 'the teacher sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);
  await waitUntil(termA, 'terminal A sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);
  await waitUntil(termB, 'terminal B sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);
  await waitUntil(student, 'the student sees the lesson ended', () => document.getElementById('lesson-ended'), null, 15000);

  // The counter works (the teacher's and A's pages asked for their cameras); the phone never asked.
  const asked = { teacher: await mediaRequests(teacher), A: await mediaRequests(termA), student: await mediaRequests(student) };
  check(asked.teacher > 0 && asked.A > 0, `the publishing pages called getUserMedia: ${JSON.stringify(asked)}`);
  check(asked.student === 0, `the student's page never called getUserMedia: ${JSON.stringify(asked)}`);
  note(`ok: getUserMedia calls ${JSON.stringify(asked)}`);
  check(secretSent.length === 0, `the link's secret was sent in a request path: ${secretSent.join(', ')}`);
  note('ok: the link\'s secret never appeared in a request path');

  // 9. An old-style /l/{secret} address becomes /l#{secret} before anything else is fetched, and
  // shows the course's lessons (this one ended).
  const old = watch(await ctxS.newPage(), 'student (old link)');
  await old.goto(`${base}/l/${secret}`, { timeout: 30000 });
  await waitUntil(old, 'the old link shows the lesson ended in the course list',
    (id) => { const li = document.querySelector(`#lesson-list li[data-lesson="${id}"]`); return li && li.dataset.phase === 'ended'; }, lesson, 15000);
  const where = await old.evaluate(() => [location.pathname, location.hash]);
  check(where[0] === '/l' && where[1] === `#${secret}`, `the old link was rewritten to the fragment form: ${JSON.stringify(where)}`);
  check(secretSent.length === 1 && secretSent[0] === `GET /l/${secret}`,
    `only the old link's own page request carried the secret: ${secretSent.join(', ')}`);
  note('ok: the old-style link was rewritten and shows the course');

  check(consoleErrors.length === 0, `no errors in the pages: ${consoleErrors.join('\n')}`);
  note('PASS');
} catch (e) {
  process.exitCode = 1;
  note(`error: ${e && e.stack}`);
} finally {
  await browser.close().catch(() => {});
  console.log(log.join('\n'));
}
