// The classroom management pages as a newcomer uses them, in one Chromium with a browser context
// per person. The accounts exist already (as `tongxin admin create-user` makes them); everything
// else goes through the forms, never the API:
//
// the organizer logs in, opens Classroom from the navigation, creates a school (a mistyped time
// zone first: the form names the field and nothing is created), two remote classrooms (device
// accounts and an assistant picked from the lists GET /api/v1/classroom/accounts fills), a course
// (its teacher picked too; a blank title is refused the same way) and two students; on the course
// page enrols both, makes one a personal link (shown as /l#<secret>) and schedules a lesson for
// both classrooms starting this minute in the school's time zone. The teacher logs in and starts
// the lesson from the home page into the teacher console; a classroom terminal and the assistant
// log in and see the lesson's join card. Back on the course page, the attendance over the course
// lists the teacher, both classrooms and both students, and links its CSV.
//
//   BASE_URL=http://127.0.0.1:PORT PASSWORD=… ORGANIZER_USER=… TEACHER_USER=… TERMINAL_A_USER=…
//   TERMINAL_B_USER=… ASSISTANT_USER=… [SCREENSHOT_DIR=…] node classroom.mjs
import { launchBrowser, check } from './chromium.mjs';

const env = (name) => {
  const v = process.env[name];
  check(v, `${name} must be set`);
  return v;
};
const base = env('BASE_URL');
const password = env('PASSWORD');
const users = {
  organizer: env('ORGANIZER_USER'), teacher: env('TEACHER_USER'), A: env('TERMINAL_A_USER'), B: env('TERMINAL_B_USER'),
  assistant: env('ASSISTANT_USER'),
};
const shots = process.env.SCREENSHOT_DIR;
const ZONE = 'Asia/Shanghai';

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const log = [];
const note = (line) => log.push(`[${elapsed()}] ${line}`);

// Console errors fail the test, except the 401 of the first /me before login and the 422s of the
// invalid forms this script submits on purpose (counted, and expected exactly).
const consoleErrors = [];
let expected422 = 0;
function watch(page, name) {
  page.on('console', (m) => {
    note(`${name} console.${m.type()}: ${m.text()}`);
    if (m.type() !== 'error' || m.text().includes('status of 401')) return;
    if (m.text().includes('status of 422') && expected422 > 0) {
      expected422 -= 1;
      return;
    }
    consoleErrors.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${name} page error: ${e}`));
  page.on('crash', () => consoleErrors.push(`${name} page crashed`));
  return page;
}

// Waits (bounded) until `fn(arg)` is truthy in the page; fails saying what did not happen.
async function waitUntil(page, what, fn, arg, ms = 15000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch (e) {
    const text = await page.evaluate(() => document.querySelector('main, #app')?.innerText.slice(0, 1500)).catch(() => '?');
    check(false, `${what} (not within ${ms / 1000} s): ${String(e).split('\n')[0]}\npage at ${page.url()}:\n${text}`);
  }
  note(`ok: ${what}`);
}

async function login(page, username) {
  await page.goto(base, { timeout: 30000 });
  await page.waitForSelector('input[name=username]', { timeout: 30000 });
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login'), { timeout: 30000 }),
    page.click('form button[type=submit]'),
  ]);
  check(res.status() === 200, `${username} logs in (status ${res.status()})`);
  await page.waitForSelector('nav.nav', { timeout: 15000 });
  note(`ok: ${username} logged in`);
}

// Submits `form` and returns the status of the API request it made.
async function submit(page, form, path, method = 'POST') {
  const [res] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === `/api/v1${path}` && r.request().method() === method, { timeout: 15000 }),
    page.click(`${form} button[type=submit]`),
  ]);
  return res.status();
}

// The rows of a /classroom table: `data-<key>` → row text.
const rows = (page, section, key) => page.$$eval(`#${section} tr[data-${key}]`,
  (trs, k) => trs.map((tr) => [tr.dataset[k], tr.innerText]), key);

// A checkbox of an account picker, found by the username shown beside it.
const pick = (page, form, username) => page.locator(`${form} label.check`, { hasText: username }).locator('input[type=checkbox]');

// Picks an account in a single-choice picker by the username shown in its option.
async function choose(page, select, username) {
  const value = await page.$eval(select, (s, u) => [...s.options].find((o) => o.textContent.endsWith(`(${u})`))?.value, username);
  check(value, `${select} offers ${username}`);
  await page.selectOption(select, value);
}

// The school's wall clock now, as the values of the date and time inputs.
function zonedNow(zone) {
  const parts = {};
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  });
  for (const p of fmt.formatToParts(new Date())) parts[p.type] = p.value;
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
}

const browser = await launchBrowser(['--use-fake-device-for-media-stream=fps=10']);
try {
  // The organizer's browser runs on UTC, so the school's zone must come from the school; the
  // teacher's and the classrooms' are in the school's zone, as they would be.
  const newContext = (timezoneId) => browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN', timezoneId });
  const ctxO = await newContext('UTC');
  const org = watch(await ctxO.newPage(), 'organizer');
  // The account pickers are filled from this list.
  const accountLists = [];
  org.on('response', (r) => {
    if (new URL(r.url()).pathname === '/api/v1/classroom/accounts') accountLists.push({ status: r.status(), body: r.json().catch(() => []) });
  });

  // 1. The organizer opens Classroom from the navigation.
  await login(org, users.organizer);
  await org.click('nav a[href="/classroom"]');
  await waitUntil(org, 'the classroom page shows its forms with account pickers', () =>
    document.querySelector('#site-form select[name=device_user_id] option[value^="usr_"]')
    && document.querySelector('#course-form select[name=teacher_id] option[value^="usr_"]'));
  check(accountLists.length === 1 && accountLists[0].status === 200,
    `the pickers listed the accounts once: ${JSON.stringify(accountLists.map((x) => x.status))}`);
  const accounts = Object.fromEntries((await accountLists[0].body).map((a) => [a.username, a]));
  for (const u of Object.values(users)) check(accounts[u], `GET /classroom/accounts lists ${u}: ${Object.keys(accounts)}`);
  const shown = (username) => accounts[username].display_name;
  const deviceChoices = await org.$$eval('#site-form select[name=device_user_id] option', (os) => os.map((o) => o.textContent));
  check(deviceChoices.some((x) => x.includes(`(${users.A})`)) && deviceChoices.some((x) => x.includes(`(${users.B})`))
    && !deviceChoices.some((x) => x.includes(`(${users.teacher})`)),
  `the terminal picker offers the device accounts only: ${JSON.stringify(deviceChoices)}`);

  // 2. A school; a mistyped time zone first: the form names the field and nothing is created.
  await org.fill('#school-form input[name=name]', '成都七中');
  await org.fill('#school-form input[name=time_zone]', 'Asia/Shangai');
  expected422 += 1;
  check(await submit(org, '#school-form', '/schools') === 422, 'a mistyped time zone is refused');
  await waitUntil(org, 'the school form names the time zone field', () => {
    const err = document.querySelector('#schools [role=alert]');
    const tz = document.querySelector('#school-form input[name=time_zone]');
    return err && err.textContent.includes('时区') && tz.getAttribute('aria-invalid') === 'true';
  });
  check((await rows(org, 'schools', 'school')).length === 0, 'the refused school was not created');
  await org.fill('#school-form input[name=time_zone]', ZONE);
  check(await submit(org, '#school-form', '/schools') === 201, 'the school is created');
  await waitUntil(org, 'the school is listed with its time zone', (z) => {
    const tr = document.querySelector('#schools tr[data-school]');
    return tr && tr.innerText.includes('成都七中') && tr.innerText.includes(z);
  }, ZONE);
  check(await org.getAttribute('#school-form input[name=time_zone]', 'aria-invalid') === null, 'the time zone is no longer marked invalid');

  // 3. Two remote classrooms, each with its terminal; A with the assistant.
  const sites = [['两河村小学四年级', users.A, true], ['石门村小学四年级', users.B, false]];
  for (const [name, device, withAssistant] of sites) {
    await waitUntil(org, 'the classroom form has the school chosen', () => !!document.querySelector('#site-form select[name=school_id]')?.value);
    await org.fill('#site-form input[name=name]', name);
    await choose(org, '#site-form select[name=device_user_id]', device);
    if (withAssistant) await pick(org, '#site-form', users.assistant).check();
    check(await submit(org, '#site-form', '/sites') === 201, `classroom ${name} is created`);
    await waitUntil(org, `classroom ${name} is listed with its terminal`, ([n, d]) =>
      [...document.querySelectorAll('#sites tr[data-site]')].some((tr) => tr.innerText.includes(n) && tr.innerText.includes(d)),
    [name, shown(device)]);
  }
  const siteRows = await rows(org, 'sites', 'site');
  check(siteRows.length === 2, `two classrooms: ${JSON.stringify(siteRows)}`);
  const siteA = siteRows.find(([, text]) => text.includes(sites[0][0]))[0];
  const siteB = siteRows.find(([, text]) => text.includes(sites[1][0]))[0];
  check(siteRows.find(([id]) => id === siteA)[1].includes(shown(users.assistant)), 'classroom A lists its assistant');

  // 4. A course: a blank title is refused and names the field; then the real one.
  await org.fill('#course-form input[name=title]', '   ');
  await choose(org, '#course-form select[name=teacher_id]', users.teacher);
  expected422 += 1;
  check(await submit(org, '#course-form', '/courses') === 422, 'a blank course title is refused');
  await waitUntil(org, 'the course form names the title field', () => {
    const err = document.querySelector('#courses [role=alert]');
    return err && err.textContent.includes('标题')
      && document.querySelector('#course-form input[name=title]').getAttribute('aria-invalid') === 'true';
  });
  check((await rows(org, 'courses', 'course')).length === 0, 'the refused course was not created');
  await org.fill('#course-form input[name=title]', '四年级数学');
  check(await submit(org, '#course-form', '/courses') === 201, 'the course is created');
  await waitUntil(org, 'the course is listed with its teacher', (tn) => {
    const tr = document.querySelector('#courses tr[data-course]');
    return tr && tr.innerText.includes('四年级数学') && tr.innerText.includes(tn);
  }, shown(users.teacher));
  const course = (await rows(org, 'courses', 'course'))[0][0];

  // 5. Two students.
  const students = ['王小明', '李小红'];
  for (const name of students) {
    await org.fill('#student-form input[name=name]', name);
    check(await submit(org, '#student-form', '/students') === 201, `student ${name} is created`);
    await waitUntil(org, `student ${name} is listed`, (n) =>
      [...document.querySelectorAll('#students tr[data-student]')].some((tr) => tr.innerText.includes(n)), name);
  }
  const studentIds = Object.fromEntries((await rows(org, 'students', 'student')).map(([id, text]) => [text.split('\t')[0].trim(), id]));
  check(students.every((n) => studentIds[n]), `both students have ids: ${JSON.stringify(studentIds)}`);
  if (shots) await org.screenshot({ path: `${shots}/classroom-manage.png`, fullPage: true });

  // 6. The course page: enrol both, make a link for one.
  await org.click(`#courses tr[data-course="${course}"] a`);
  await waitUntil(org, 'the course page opens with its enrol form', (id) => location.pathname === `/classroom/course/${id}`
    && document.querySelector('#enrol-form select[name=student_id]')?.options.length === 3, course);
  for (const name of students) {
    await org.locator('#enrol-form select[name=student_id]').selectOption({ label: name });
    check(await submit(org, '#enrol-form', `/courses/${course}/students`) === 201, `${name} is enrolled`);
    await waitUntil(org, `${name} is listed as enrolled`, (id) => document.querySelector(`#enrolment tr[data-student="${id}"]`), studentIds[name]);
  }
  await waitUntil(org, 'with everyone enrolled the enrol form hides', () => document.getElementById('enrol-form').hidden);
  const linked = studentIds[students[0]];
  await org.click(`#enrolment tr[data-student="${linked}"] button.new-link`);
  await waitUntil(org, 'the new link is shown once', (id) => document.querySelector(`.link-once[data-student="${id}"] input.link-url`), linked);
  const url = await org.inputValue('.link-once input.link-url');
  check(new RegExp(`^${base.replace(/[.]/g, '\\.')}/l#[A-Za-z0-9_-]{20,}$`).test(url), `the link is ${base}/l#<secret>: ${url}`);
  await waitUntil(org, 'the student\'s row shows an active link', (id) =>
    document.querySelector(`#enrolment tr[data-student="${id}"] button.revoke-link`), linked);

  // 7. A lesson for both classrooms, starting this minute in the school's zone.
  const start = zonedNow(ZONE);
  await org.fill('#lesson-form input[name=title]', '分数的认识');
  await org.fill('#lesson-form input[name=date]', start.date);
  await org.fill('#lesson-form input[name=time]', start.time);
  for (const id of [siteA, siteB]) await org.check(`#lesson-form input[name=site_ids][value="${id}"]`);
  check(await submit(org, '#lesson-form', '/lessons') === 201, 'the lesson is scheduled');
  await waitUntil(org, 'the lesson is listed for both classrooms, live', ([a, b]) => {
    const tr = document.querySelector('#lessons tr.lesson-row');
    return tr && tr.dataset.state === 'live' && tr.innerText.includes(a) && tr.innerText.includes(b);
  }, [sites[0][0], sites[1][0]]);
  const lesson = await org.getAttribute('#lessons tr.lesson-row', 'data-lesson');
  const when = await org.textContent('#lessons tr.lesson-row time');
  check(when.includes(start.time), `the lesson is shown at ${start.time} school time: ${when}`);
  // It started this minute, so the course's attendance counts it at once.
  await waitUntil(org, 'the course attendance counts the lesson just scheduled',
    (id) => document.querySelectorAll('#course-attendance tr[data-attendee]').length === 5
      && document.querySelector(`#lessons tr.lesson-row[data-lesson="${id}"] a.attendance-link`), lesson);
  // The organizer heads no school: the server would not let them in, so there is no button.
  check(await org.locator('#lessons a.join-lesson').count() === 0, 'the organizer is offered no way into the lesson');
  if (shots) await org.screenshot({ path: `${shots}/classroom-course.png`, fullPage: true });

  // 8. The teacher starts it from the home page, into the teacher console.
  const ctxT = await newContext(ZONE);
  const teacher = watch(await ctxT.newPage(), 'teacher');
  await login(teacher, users.teacher);
  const startLink = `.lessons-card li.lesson-row[data-lesson="${lesson}"] a.join-lesson`;
  await waitUntil(teacher, 'the teacher\'s home page lists the lesson with a start link', (s) => document.querySelector(s), startLink);
  check(await teacher.getAttribute(startLink, 'href') === `/lesson/${lesson}`, 'the start link opens /lesson/{id}');
  const teacherWhen = await teacher.textContent(`.lessons-card li.lesson-row[data-lesson="${lesson}"] .when`);
  check(teacherWhen.includes(start.time), `the teacher's home page shows the start, ${start.time}: ${teacherWhen}`);
  await teacher.click(startLink);
  await waitUntil(teacher, 'the teacher is live in the teacher console', (id) => {
    const v = document.getElementById('lesson-view');
    const l = window.tongxinLesson;
    return location.pathname === `/lesson/${id}` && v && v.dataset.role === 'teacher' && v.dataset.state === 'live'
      && l && l.client && l.client.state === 'joined';
  }, lesson, 30000);
  if (shots) await teacher.screenshot({ path: `${shots}/classroom-teacher-console.png` });

  // 9. A classroom terminal and the assistant see today's lesson with a join button.
  for (const [name, username] of [['terminal A', users.A], ['the assistant', users.assistant]]) {
    const ctx = await newContext(ZONE);
    const page = watch(await ctx.newPage(), name);
    await login(page, username);
    const join = `.lessons-card[data-today="true"] li.lesson-row[data-lesson="${lesson}"] a.join-lesson`;
    await waitUntil(page, `${name} sees the lesson's join card`, (s) => document.querySelector(s), join);
    check(await page.getAttribute(join, 'href') === `/lesson/${lesson}`, `${name}'s join button opens /lesson/{id}`);
    if (shots && username === users.A) await page.screenshot({ path: `${shots}/classroom-terminal-home.png` });
    await ctx.close();
  }

  // 10. The course's attendance again: the teacher (in the lesson now), both classrooms and both
  // students.
  await org.reload();
  await waitUntil(org, 'the course attendance lists the lesson\'s people', (keys) =>
    keys.every((k) => document.querySelector(`#course-attendance tr[data-attendee="${k}"]`)),
  [`classroom:${siteA}`, `classroom:${siteB}`, ...Object.values(studentIds).map((id) => `student:${id}`)]);
  const attendance = await org.$$eval('#course-attendance tr[data-attendee]', (trs) => trs.map((tr) => ({
    who: tr.dataset.attendee,
    counts: Object.fromEntries([...tr.querySelectorAll('td[data-status]')].map((td) => [td.dataset.status, Number(td.textContent)])),
  })));
  const teacherRow = attendance.find((r) => r.who.startsWith('teacher:'));
  check(attendance.length === 5 && teacherRow, `five rows, the teacher's among them: ${JSON.stringify(attendance)}`);
  check(teacherRow.counts.present + teacherRow.counts.late === 1, `the teacher, in the lesson, counts as there: ${JSON.stringify(teacherRow)}`);
  for (const r of attendance.filter((x) => x !== teacherRow)) {
    check(r.counts.absent === 1, `${r.who} has not joined, so is absent so far: ${JSON.stringify(r)}`);
  }
  const counted = await org.textContent('#course-attendance p.muted');
  check(/\b1\b/.test(counted), `the section counts one lesson: ${counted}`);
  const csv = await org.getAttribute('#course-attendance-csv', 'href');
  check(csv === `/api/v1/courses/${course}/attendance.csv`, `the CSV link: ${csv}`);
  const file = await ctxO.request.get(`${base}${csv}`);
  const text = await file.text();
  check(file.status() === 200 && text.startsWith('\ufeff') && text.includes('分数的认识') && text.includes('王小明'),
    `the CSV downloads with a BOM and the lesson's rows: ${file.status()} ${text.slice(0, 300)}`);
  note('ok: the course attendance and its CSV');
  if (shots) await org.screenshot({ path: `${shots}/classroom-attendance.png`, fullPage: true });

  check(expected422 === 0, `both refused forms logged their 422 (${expected422} not seen)`);
  check(consoleErrors.length === 0, `no errors in the pages: ${consoleErrors.join('\n')}`);
  note('PASS');
} catch (e) {
  process.exitCode = 1;
  note(`error: ${e && e.stack}`);
} finally {
  await browser.close().catch(() => {});
  console.log(log.join('\n'));
}
