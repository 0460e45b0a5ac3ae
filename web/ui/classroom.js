// Classroom management: schools, remote classrooms (sites), courses and students (/classroom),
// one course's enrolments, student links and lesson schedule (/classroom/course/{id}), and the
// lesson cards on the home page of teachers, classroom terminals and assistants.

import { api, ApiError } from './api.js';
import { locale, t } from './i18n.js';
import { h, raw, message, errorText } from './app.js';

const MANAGERS = ['admin', 'organizer'];
const DEFAULT_ZONE = 'Asia/Shanghai';
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const MAX_LESSON_MS = 480 * 60_000;
// Lessons overrun: the room stays joinable this long after the scheduled end (classroom::rules).
const OVERRUN_MS = 30 * 60_000;
const HOME_REFRESH_MS = 60_000;
const TEACHER_HORIZON_MS = 30 * 24 * 3600_000;

// Request fields a 422 may name, so the message says which input to fix.
const FIELD_KEYS = {
  name: 'classroom.field.name', time_zone: 'classroom.field.time_zone', head_user_ids: 'classroom.field.heads',
  school_id: 'classroom.field.school', device_user_id: 'classroom.field.device', assistant_user_ids: 'classroom.field.assistants',
  title: 'classroom.field.title', teacher_id: 'classroom.field.teacher', student_id: 'classroom.field.student',
  course_id: 'classroom.field.course', starts_at: 'classroom.field.starts_at', duration_min: 'classroom.field.duration',
  site_ids: 'classroom.field.sites', repeat: 'classroom.field.repeat', count: 'classroom.field.count',
  'repeat.count': 'classroom.field.count',
};

function errText(e) {
  // List items are named with their index (`site_ids[2]`); the list's label is clear enough.
  const field = e instanceof ApiError && e.code === 'validation' && String(e.field || '').replace(/\[\d+\]$/, '');
  if (field && FIELD_KEYS[field]) return t('error.validation', { field: t(FIELD_KEYS[field]) });
  return errorText(e);
}

// The form control a request field is entered in, where the names differ.
const CONTROL_OF = { starts_at: 'date', 'repeat.count': 'count' };

// Marks the control a refused request names (aria-invalid) and moves the focus there, so the fix
// starts at the right input; editing that control, or a later success, clears the mark.
function fieldMarks(form) {
  const clear = (name) => {
    for (const el of form.querySelectorAll('[aria-invalid]')) if (!name || el.name === name) el.removeAttribute('aria-invalid');
  };
  form.addEventListener('input', (ev) => clear(ev.target.name));
  form.addEventListener('change', (ev) => clear(ev.target.name));
  const mark = (e) => {
    clear();
    const field = e instanceof ApiError && e.code === 'validation' && String(e.field || '').replace(/\[\d+\]$/, '');
    if (!field) return;
    const name = CONTROL_OF[field] || field;
    const controls = [...form.elements].filter((el) => el.name === name);
    for (const el of controls) el.setAttribute('aria-invalid', 'true');
    if (controls.length) controls[0].focus();
  };
  return { mark, clear: () => clear() };
}

const path = (p, id) => `${p}/${encodeURIComponent(id)}`;
// List endpoints answer with an array; an object wrapping one is accepted too.
const listOf = (data, key) => (Array.isArray(data) ? data : (data && data[key]) || []);
const byId = (items) => new Map(items.map((x) => [x.id, x]));
const label = (key, control, hint) => h('label', {}, h('span', { text: t(key) }), control, hint ? h('small.muted', { text: hint }) : null);

function table(headKeys, rows, emptyKey) {
  if (!rows.length) return h('p.muted.empty', { text: t(emptyKey) });
  return h('div.table-scroll', {}, h('table', {},
    h('thead', {}, h('tr', {}, headKeys.map((k) => h('th', { text: t(k) })))),
    h('tbody', {}, rows)));
}

// ---- times -------------------------------------------------------------------------------
// Lessons are planned in the school's IANA time zone, so a weekly lesson stays at 08:00 local
// whoever schedules it; a zone this browser does not know falls back to the browser's own.

const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || DEFAULT_ZONE;

function knownZone(zone) {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return zone;
  } catch {
    return browserZone();
  }
}

// How far `zone`'s wall clock is ahead of UTC at the instant `ms`, in ms.
function zoneOffset(zone, ms) {
  const parts = {};
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
  });
  for (const p of fmt.formatToParts(new Date(ms))) parts[p.type] = Number(p.value);
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour % 24, parts.minute, parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

const pad = (n) => String(n).padStart(2, '0');

// '2025-03-04' + '08:30' in `zone` → '2025-03-04T08:30:00+08:00'.
export function zonedRfc3339(date, time, zone) {
  const [y, mo, d] = date.split('-').map(Number);
  const [hh, mm] = time.split(':').map(Number);
  const wall = Date.UTC(y, mo - 1, d, hh, mm);
  // Two passes find the offset in force at that wall time, also across a DST change.
  const offset = zoneOffset(zone, wall - zoneOffset(zone, wall));
  const abs = Math.abs(offset) / 60_000;
  return `${date}T${pad(hh)}:${pad(mm)}:00${offset < 0 ? '-' : '+'}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// The wall-clock date and time of `ms` in `zone`, as the values of date and time inputs.
function zonedInputs(ms, zone) {
  const iso = new Date(ms + zoneOffset(zone, ms)).toISOString();
  return { date: iso.slice(0, 10), time: iso.slice(11, 16) };
}

// Numbers only: every locale shows them in its own order, and none needs month names.
function formatWhen(ms, zone, withDate = true) {
  const opts = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  if (withDate) Object.assign(opts, { year: 'numeric', month: 'numeric', day: 'numeric' });
  if (zone) opts.timeZone = zone;
  try {
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  } catch {
    return new Intl.DateTimeFormat('zh-CN', opts).format(new Date(ms));
  }
}

function timeEl(ms, zone, withDate = true) {
  // Digits keep their left-to-right order inside right-to-left text.
  return h('time', { dir: 'ltr', datetime: new Date(ms).toISOString(), text: formatWhen(ms, zone, withDate) });
}

// ---- lessons -----------------------------------------------------------------------------

// `from`/`to` of GET /lessons: RFC 3339, like `starts_at` when creating.
const queryTime = (ms) => encodeURIComponent(new Date(ms).toISOString());

const endsAt = (l) => l.starts_at + l.duration_min * 60_000;

function lessonState(l, now) {
  if (l.cancelled_at) return 'cancelled';
  if (l.ended_at) return 'ended';
  if (endsAt(l) + OVERRUN_MS <= now) return 'past';
  if (l.starts_at <= now) return 'live';
  return 'scheduled';
}

const isOpen = (l, now) => ['live', 'scheduled'].includes(lessonState(l, now));

// Upcoming and running lessons first, soonest first; then the rest, latest first.
function sortLessons(lessons, now) {
  const open = lessons.filter((l) => isOpen(l, now)).sort((a, b) => a.starts_at - b.starts_at);
  const done = lessons.filter((l) => !isOpen(l, now)).sort((a, b) => b.starts_at - a.starts_at);
  return [...open, ...done];
}

const statusPill = (l, now) => {
  const s = lessonState(l, now);
  return h('span.pill.lesson-state', { 'data-state': s, text: t(`classroom.lesson.state.${s}`) });
};

// The lesson page itself is built in lesson.js; these are plain links to it.
const joinLink = (l, key, cls = '') => h(`a.join-lesson${cls}`, { href: path('/lesson', l.id), 'data-nav': true, text: t(key) });

// ---- choosing accounts ------------------------------------------------------------------
// Organizers and administrators pick from the accounts /classroom/accounts lists; if that list
// cannot be had, account ids are typed, several separated by commas or spaces.

function accountField(users, roles, { multiple = false, required = false, name }) {
  if (!users) {
    const input = h('input', { name, required, autocapitalize: 'none', spellcheck: 'false', dir: 'ltr' });
    const split = () => input.value.split(/[\s,，、]+/).filter(Boolean);
    return {
      el: input,
      hint: t(multiple ? 'classroom.account_ids_hint' : 'classroom.account_id_hint'),
      value: () => (multiple ? split() : split()[0] || null),
      set: (v) => { input.value = multiple ? (v || []).join(', ') : v || ''; },
    };
  }
  const pool = users.filter((u) => roles.includes(u.role) && !u.disabled);
  const optionText = (u) => `${u.display_name} (${u.username})`;
  if (!multiple) {
    const select = h('select', { name, required },
      h('option', { value: '', text: t(required ? 'classroom.choose' : 'classroom.nobody') }),
      pool.map((u) => h('option', { value: u.id, text: optionText(u) })));
    return { el: select, value: () => select.value || null, set: (v) => { select.value = v || ''; } };
  }
  if (!pool.length) {
    const none = h('p.muted.small', { text: t('classroom.no_accounts') });
    return { el: none, value: () => [], set: () => {} };
  }
  const boxes = pool.map((u) => h('input', { type: 'checkbox', name, value: u.id }));
  const list = h('div.pick-list', { role: 'group' },
    pool.map((u, i) => h('label.check', {}, boxes[i], raw(u.display_name), ' ', h('span.muted.small', {}, raw(u.username)))));
  return {
    el: list,
    value: () => boxes.filter((b) => b.checked).map((b) => b.value),
    set: (v) => { for (const b of boxes) b.checked = (v || []).includes(b.value); },
  };
}

function accountNames(users, ids) {
  const known = byId(users || []);
  if (!ids || !ids.length) return h('span.muted', { text: t('classroom.none') });
  return h('span', {}, ids.flatMap((id, i) => [i ? sep() : null, raw(known.get(id)?.display_name || id)]));
}

// A labelled account field: a <label> around a typed input, a group around checkboxes.
function accountLabel(key, field, hint) {
  const text = field.hint || hint;
  const tag = field.el.tagName === 'DIV' || field.el.tagName === 'P' ? 'div.field.wide' : 'label';
  return h(tag, tag === 'label' ? {} : { role: 'group' }, h('span', { text: t(key) }), field.el, text ? h('small.muted', { text }) : null);
}

// A list separator that reads right in every script.
const sep = () => h('span', { text: locale() === 'ug' ? '، ' : locale().startsWith('zh') ? '、' : ', ' });

function schoolSelect(state, name = 'school_id') {
  const select = h('select', { name, required: true });
  const refresh = () => {
    const keep = select.value;
    select.replaceChildren(h('option', { value: '', text: t('classroom.choose') }),
      ...state.schools.map((s) => h('option', { value: s.id, text: s.name })));
    select.value = state.schools.some((s) => s.id === keep) ? keep : (state.schools.length === 1 ? state.schools[0].id : '');
  };
  return { el: select, refresh };
}

// A create form that also edits (when given `editKey` and `update`): a row's "edit" fills it and
// its submit becomes a PATCH.
function editableForm({ id, newKey, editKey, fields, body, fill, create, update, status, reload, conflictKey }) {
  const title = h('h2', { text: t(newKey) });
  const submit = h('button', { type: 'submit', text: t('classroom.create') });
  const cancel = h('button.secondary', { type: 'button', hidden: true, text: t('classroom.cancel_edit'), onclick: () => stopEditing() });
  let editing = null;
  let marks = null;
  const form = h('form.card', {
    id,
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      try {
        if (editing) await update(editing, body(true));
        else await create(body(false));
        marks.clear();
        status.replaceChildren(message('ok', t(editing ? 'classroom.saved' : 'classroom.created')));
        stopEditing();
        await reload();
      } catch (e) {
        status.replaceChildren(message('error', e.code === 'conflict' && conflictKey ? t(conflictKey) : errText(e)));
        marks.mark(e);
      } finally {
        submit.disabled = false;
      }
    },
  }, title, h('div.row', {}, fields), h('div.actions', {}, submit, cancel));
  marks = fieldMarks(form);
  function stopEditing() {
    editing = null;
    fill(null);
    delete form.dataset.editing;
    title.textContent = t(newKey);
    submit.textContent = t('classroom.create');
    cancel.hidden = true;
  }
  const edit = (record) => {
    editing = record.id;
    form.dataset.editing = record.id;
    fill(record);
    title.textContent = t(editKey);
    submit.textContent = t('classroom.save');
    cancel.hidden = false;
    form.scrollIntoView({ block: 'nearest' });
  };
  return { form, edit };
}

// ---- /classroom --------------------------------------------------------------------------

function forbidden() {
  return h('section', {}, h('h1', { text: t('classroom.title') }), message('error', t('error.forbidden')));
}

export function classroomView(me) {
  if (!MANAGERS.includes(me.role)) return forbidden();
  const state = { schools: [], sites: [], courses: [], students: [], users: null, usersLoaded: false };
  const status = h('div');
  const parts = [schoolsPart, sitesPart, coursesPart, studentsPart].map((f) => f(state, () => load()));
  async function load() {
    const wanted = [api('GET', '/schools'), api('GET', '/sites'), api('GET', '/courses'), api('GET', '/students'),
      api('GET', '/classroom/accounts')];
    const [schools, sites, courses, students, users] = await Promise.allSettled(wanted);
    const failed = [schools, sites, courses, students, users].find((r) => r.status === 'rejected');
    status.replaceChildren(...(failed ? [message('error', errText(failed.reason))] : []));
    const ok = (r, key) => (r.status === 'fulfilled' ? listOf(r.value, key) : []);
    Object.assign(state, {
      schools: ok(schools, 'schools'), sites: ok(sites, 'sites'), courses: ok(courses, 'courses'), students: ok(students, 'students'),
    });
    if (!state.usersLoaded) {
      // The account pickers are built once, when the account list is known.
      state.users = users.status === 'fulfilled' && users.value ? listOf(users.value, 'accounts') : null;
      state.usersLoaded = true;
      for (const p of parts) p.build();
    }
    for (const p of parts) p.refresh();
  }
  load();
  return h('section', { 'data-view': 'classroom' },
    h('h1', { text: t('classroom.title') }),
    h('p.muted', { text: t('classroom.intro') }),
    status,
    parts.map((p) => p.el));
}

// One section of /classroom: a heading, a form (built once the account list is known) and a
// table that `refresh` redraws from `state`.
function part(id, titleKey) {
  const formSlot = h('div');
  const status = h('div');
  const list = h('div');
  const el = h('section.classroom-part', { id }, h('h2', { text: t(titleKey) }), formSlot, status, list);
  return { el, formSlot, status, list };
}

function schoolsPart(state, reload) {
  const { el, formSlot, status, list } = part('schools', 'classroom.schools');
  let editor = null;
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [DEFAULT_ZONE];
  const zone = h('input', { name: 'time_zone', required: true, value: DEFAULT_ZONE, list: 'tz-list', dir: 'ltr', autocapitalize: 'none' });
  const zoneList = h('datalist', { id: 'tz-list' }, zones.map((z) => h('option', { value: z })));
  return {
    el,
    build() {
      const heads = accountField(state.users, ['admin', 'teacher', 'organizer'], { multiple: true, name: 'head_user_ids' });
      editor = editableForm({
        id: 'school-form', newKey: 'classroom.school.new', editKey: 'classroom.school.edit', status, reload,
        fields: [label('classroom.field.name', name), label('classroom.field.time_zone', h('span', {}, zone, zoneList)),
          accountLabel('classroom.field.heads', heads, t('classroom.heads_hint'))],
        body: () => ({ name: name.value.trim(), time_zone: zone.value.trim(), head_user_ids: heads.value() }),
        fill: (s) => { name.value = s?.name || ''; zone.value = s?.time_zone || DEFAULT_ZONE; heads.set(s?.head_user_ids || []); },
        create: (b) => api('POST', '/schools', b),
        update: (id, b) => api('PATCH', path('/schools', id), b),
      });
      formSlot.replaceChildren(editor.form);
    },
    refresh() {
      list.replaceChildren(table(['classroom.field.name', 'classroom.field.time_zone', 'classroom.field.heads', 'classroom.actions'],
        state.schools.map((s) => h('tr', { 'data-school': s.id },
          h('td', {}, raw(s.name)), h('td', {}, raw(s.time_zone)), h('td', {}, accountNames(state.users, s.head_user_ids)),
          h('td', {}, h('button.secondary', { type: 'button', text: t('classroom.edit'), onclick: () => editor.edit(s) })))),
        'classroom.school.empty'));
    },
  };
}

function sitesPart(state, reload) {
  const { el, formSlot, status, list } = part('sites', 'classroom.sites');
  let editor = null;
  const school = schoolSelect(state);
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  return {
    el,
    build() {
      const device = accountField(state.users, ['device'], { name: 'device_user_id' });
      const assistants = accountField(state.users, ['assistant'], { multiple: true, name: 'assistant_user_ids' });
      editor = editableForm({
        id: 'site-form', newKey: 'classroom.site.new', editKey: 'classroom.site.edit', status, reload, conflictKey: 'classroom.site.terminal_taken',
        fields: [label('classroom.field.school', school.el), label('classroom.field.name', name, t('classroom.site.name_hint')),
          accountLabel('classroom.field.device', device, t('classroom.device_hint')),
          accountLabel('classroom.field.assistants', assistants)],
        body: (editing) => ({
          ...(editing ? {} : { school_id: school.el.value }),
          name: name.value.trim(), device_user_id: device.value(), assistant_user_ids: assistants.value(),
        }),
        fill: (s) => {
          school.el.disabled = !!s;
          if (s) school.el.value = s.school_id;
          name.value = s?.name || '';
          device.set(s?.device_user_id);
          assistants.set(s?.assistant_user_ids || []);
        },
        create: (b) => api('POST', '/sites', b),
        update: (id, b) => api('PATCH', path('/sites', id), b),
      });
      formSlot.replaceChildren(editor.form);
    },
    refresh() {
      school.refresh();
      const schools = byId(state.schools);
      list.replaceChildren(table(['classroom.field.name', 'classroom.field.school', 'classroom.field.device', 'classroom.field.assistants', 'classroom.actions'],
        state.sites.map((s) => h('tr', { 'data-site': s.id },
          h('td', {}, raw(s.name)), h('td', {}, raw(schools.get(s.school_id)?.name || s.school_id)),
          h('td', {}, s.device_user_id ? accountNames(state.users, [s.device_user_id]) : h('span.muted', { text: t('classroom.none') })),
          h('td', {}, accountNames(state.users, s.assistant_user_ids)),
          h('td', {}, h('button.secondary', { type: 'button', text: t('classroom.edit'), onclick: () => editor.edit(s) })))),
        'classroom.site.empty'));
    },
  };
}

function coursesPart(state, reload) {
  const { el, formSlot, status, list } = part('courses', 'classroom.courses');
  const school = schoolSelect(state);
  const title = h('input', { name: 'title', required: true, maxlength: 100 });
  return {
    el,
    build() {
      const teacher = accountField(state.users, ['teacher'], { name: 'teacher_id', required: true });
      const { form } = editableForm({
        id: 'course-form', newKey: 'classroom.course.new', status, reload,
        fields: [label('classroom.field.school', school.el), label('classroom.field.title', title, t('classroom.course.title_hint')),
          accountLabel('classroom.field.teacher', teacher)],
        body: () => ({ school_id: school.el.value, title: title.value.trim(), teacher_id: teacher.value() }),
        fill: () => { title.value = ''; teacher.set(null); },
        create: (b) => api('POST', '/courses', b),
      });
      formSlot.replaceChildren(form);
    },
    refresh() {
      school.refresh();
      const schools = byId(state.schools);
      list.replaceChildren(table(['classroom.field.title', 'classroom.field.school', 'classroom.field.teacher'],
        state.courses.map((c) => h('tr', { 'data-course': c.id },
          h('td', {}, h('a', { href: path('/classroom/course', c.id), 'data-nav': true }, raw(c.title))),
          h('td', {}, raw(schools.get(c.school_id)?.name || c.school_id)),
          h('td', {}, accountNames(state.users, [c.teacher_id])))),
        'classroom.course.empty'));
    },
  };
}

function studentsPart(state, reload) {
  const { el, formSlot, status, list } = part('students', 'classroom.students');
  const school = schoolSelect(state);
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  return {
    el,
    build() {
      const { form } = editableForm({
        id: 'student-form', newKey: 'classroom.student.new', status, reload,
        fields: [label('classroom.field.school', school.el), label('classroom.field.name', name)],
        body: () => ({ school_id: school.el.value, name: name.value.trim() }),
        fill: () => { name.value = ''; },
        create: (b) => api('POST', '/students', b),
      });
      formSlot.replaceChildren(form);
    },
    refresh() {
      school.refresh();
      const schools = byId(state.schools);
      list.replaceChildren(table(['classroom.field.name', 'classroom.field.school'],
        state.students.map((s) => h('tr', { 'data-student': s.id },
          h('td', {}, raw(s.name)), h('td', {}, raw(schools.get(s.school_id)?.name || s.school_id)))),
        'classroom.student.empty'));
    },
  };
}

// ---- /classroom/course/{id} --------------------------------------------------------------

export function courseView(me, courseId) {
  const status = h('div');
  const heading = h('h1', { text: t('classroom.course.title') });
  const info = h('p.muted');
  const body = h('div');
  const section = h('section', { 'data-view': 'course', 'data-course': courseId },
    h('p', {}, h('a', { href: '/classroom', 'data-nav': true, hidden: !MANAGERS.includes(me.role), text: t('classroom.back') })),
    heading, info, status, body);
  (async () => {
    let course;
    try {
      course = await api('GET', path('/courses', courseId));
    } catch (e) {
      status.replaceChildren(message('error', errText(e)));
      return;
    }
    heading.replaceChildren(raw(course.title));
    // The school gives the time zone and the classrooms; a teacher who may not read them
    // still sees the course, in this browser's time zone.
    const [schools, sites] = await Promise.allSettled([api('GET', '/schools'), api('GET', `/sites?school_id=${encodeURIComponent(course.school_id)}`)]);
    const school = schools.status === 'fulfilled' ? listOf(schools.value, 'schools').find((s) => s.id === course.school_id) : null;
    const ctx = {
      me, course, school, status, manager: MANAGERS.includes(me.role),
      zone: knownZone(school?.time_zone || browserZone()),
      sites: sites.status === 'fulfilled' ? listOf(sites.value, 'sites').filter((s) => s.school_id === course.school_id) : [],
    };
    info.replaceChildren(...(school ? [raw(school.name), ' · '] : []), t('classroom.times_in_zone'), ' ', raw(ctx.zone));
    const mayReport = ctx.manager || course.teacher_id === me.id;
    body.replaceChildren(lessonsPart(ctx), enrolmentPart(ctx), ...(mayReport ? [courseAttendancePart(ctx)] : []));
  })();
  return section;
}

// The course's attendance: each attendee's lessons by status, over every lesson that took place.
const STATUSES = ['present', 'late', 'left_early', 'network_dropped', 'absent'];
const ATTENDEE_KINDS = ['teacher', 'classroom', 'student'];

function courseAttendancePart(ctx) {
  const p = part('course-attendance', 'classroom.attendance.title');
  const csv = h('a.button', {
    id: 'course-attendance-csv', href: `/api/v1${path('/courses', ctx.course.id)}/attendance.csv`,
    download: `attendance-course-${ctx.course.id}.csv`, text: t('lesson.attendance.csv'),
  });
  p.formSlot.replaceChildren(h('div.row', {}, csv));
  const load = async () => {
    let report;
    try {
      report = await api('GET', `${path('/courses', ctx.course.id)}/attendance`);
    } catch (e) {
      p.status.replaceChildren(message('error', errText(e)));
      return;
    }
    const lessons = listOf(report, 'lessons');
    p.status.replaceChildren(h('p.muted', { text: t('classroom.attendance.lessons', { n: lessons.length }) }));
    const rows = listOf(report, 'totals').map((x) => {
      const a = x.attendee || {};
      return h('tr', { 'data-attendee': `${a.kind}:${a.id}` },
        h('td', { text: ATTENDEE_KINDS.includes(a.kind) ? t(`roomrole.${a.kind}`) : '' }),
        h('td', {}, raw(x.name || a.id || '')),
        ...STATUSES.map((s) => h('td', { 'data-status': s, text: String(x.counts?.[s] ?? 0) })),
        h('td', { text: String(x.minutes_present ?? 0) }));
    });
    const head = ['lesson.att.attendee', 'lesson.att.name', ...STATUSES.map((s) => `lesson.status.${s}`), 'lesson.att.minutes'];
    p.list.replaceChildren(table(head, rows, 'classroom.attendance.empty'));
  };
  // A lesson scheduled to start at once, or one cancelled, changes the report.
  ctx.lessonsChanged = load;
  load();
  return p.el;
}

// Organizers and admins enrol; the course's teacher makes and revokes links.
function enrolmentPart(ctx) {
  const { course, manager } = ctx;
  const status = h('div');
  const list = h('div');
  const shown = h('div');
  const student = h('select', { name: 'student_id', required: true });
  const submit = h('button', { type: 'submit', text: t('classroom.enrol.submit') });
  const form = h('form.card', {
    id: 'enrol-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      try {
        await api('POST', `${path('/courses', course.id)}/students`, { student_id: student.value });
        status.replaceChildren(message('ok', t('classroom.enrol.done')));
        await load();
      } catch (e) {
        status.replaceChildren(message('error', errText(e)));
      } finally {
        submit.disabled = false;
      }
    },
  }, h('h3', { text: t('classroom.enrol.title') }), h('div.row', {}, label('classroom.field.student', student)), submit);

  const act = async (fn, okKey) => {
    try {
      await fn();
      status.replaceChildren(message('ok', t(okKey)));
      await load();
    } catch (e) {
      status.replaceChildren(message('error', errText(e)));
    }
  };
  const linkPath = (s) => `${path(`${path('/courses', course.id)}/students`, s.id)}/link`;
  const newLink = async (s) => {
    try {
      const res = await api('POST', linkPath(s));
      // The secret belongs in the fragment, which browsers never send (an older server says /l/…).
      shown.replaceChildren(linkBox(s, new URL(res.url.replace(/^\/l\//, '/l#'), location.origin).href));
      status.replaceChildren();
      await load();
    } catch (e) {
      status.replaceChildren(message('error', errText(e)));
    }
  };
  const row = ({ student: s, link }) => {
    const active = link && !link.revoked_at;
    return h('tr', { 'data-student': s.id },
      h('td', {}, raw(s.name)),
      h('td', {}, !link ? h('span.muted', { text: t('classroom.link.none') })
        : active ? h('span', { text: t('classroom.link.active', { time: formatWhen(link.created_at, ctx.zone) }) })
          : h('span.muted', { text: t('classroom.link.revoked', { time: formatWhen(link.revoked_at, ctx.zone) }) })),
      h('td', {}, h('div.actions', {},
        h('button.secondary.new-link', { type: 'button', text: t(active ? 'classroom.link.replace' : 'classroom.link.new'), onclick: () => newLink(s) }),
        active ? h('button.secondary.revoke-link', {
          type: 'button', text: t('classroom.link.revoke'),
          onclick: () => confirm(t('classroom.link.revoke_confirm')) && act(() => api('DELETE', linkPath(s)), 'classroom.link.revoked_done'),
        }) : null,
        manager && h('button.secondary.unenrol', {
          type: 'button', text: t('classroom.enrol.remove'),
          onclick: () => confirm(t('classroom.enrol.remove_confirm')) &&
            act(() => api('DELETE', path(`${path('/courses', course.id)}/students`, s.id)), 'classroom.enrol.removed'),
        }))));
  };

  async function load() {
    const [enrolled, all] = await Promise.allSettled([
      api('GET', `${path('/courses', course.id)}/students`),
      manager ? api('GET', `/students?school_id=${encodeURIComponent(course.school_id)}`) : Promise.resolve([]),
    ]);
    if (enrolled.status === 'rejected') {
      list.replaceChildren(message('error', errText(enrolled.reason)));
      return;
    }
    const rows = listOf(enrolled.value, 'students').filter((x) => x && x.student);
    rows.sort((a, b) => a.student.name.localeCompare(b.student.name, locale()));
    list.replaceChildren(table(['classroom.field.student', 'classroom.link.title', 'classroom.actions'], rows.map(row), 'classroom.enrol.empty'));
    const inCourse = new Set(rows.map((x) => x.student.id));
    const free = all.status === 'fulfilled'
      ? listOf(all.value, 'students').filter((s) => s.school_id === course.school_id && !inCourse.has(s.id)) : [];
    student.replaceChildren(h('option', { value: '', text: t('classroom.choose') }), ...free.map((s) => h('option', { value: s.id, text: s.name })));
    form.hidden = !manager || !free.length;
  }
  load();
  return h('section.classroom-part', { id: 'enrolment' },
    h('h2', { text: t('classroom.enrol.heading') }), h('p.muted', { text: t('classroom.link.help') }), shown, status, list, form);
}

// A new link is shown once: the server keeps only its hash.
function linkBox(student, url) {
  const input = h('input.link-url', { readonly: true, value: url, dir: 'ltr', onfocus: (ev) => ev.target.select() });
  const copied = h('span.muted', { role: 'status' });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(url);
    } catch {
      // No clipboard API outside HTTPS: select the text and use the old command.
      input.select();
      if (!document.execCommand('copy')) {
        copied.textContent = t('classroom.link.copy_by_hand');
        return;
      }
    }
    copied.textContent = t('classroom.link.copied');
  };
  return h('div.card.link-once', { 'data-student': student.id },
    h('h3', {}, t('classroom.link.for'), ' ', raw(student.name)),
    h('div.copy-row', {}, input, h('button', { type: 'button', class: 'copy-link', onclick: copy, text: t('classroom.link.copy') })),
    copied,
    h('p.msg.warn', { text: t('classroom.link.once') }));
}

// Organizers and admins schedule and cancel; the teacher sees the schedule and starts lessons.
function lessonsPart(ctx) {
  const { me, course, zone, sites, manager } = ctx;
  const status = h('div');
  const list = h('div');
  const siteNames = byId(sites);
  const title = h('input', { name: 'title', required: true, maxlength: 100 });
  const start = zonedInputs(Math.ceil((Date.now() + 1) / HOUR) * HOUR, zone);
  const date = h('input', { name: 'date', type: 'date', required: true, value: start.date });
  const time = h('input', { name: 'time', type: 'time', required: true, value: start.time });
  const duration = h('input', { name: 'duration_min', type: 'number', required: true, min: 5, max: 480, step: 5, value: 45 });
  const boxes = sites.map((s) => h('input', { type: 'checkbox', name: 'site_ids', value: s.id, checked: sites.length === 1 }));
  const siteField = h('fieldset.wide', {}, h('legend', { text: t('classroom.field.sites') }),
    sites.length ? h('div.pick-list', {}, sites.map((s, i) => h('label.check', {}, boxes[i], raw(s.name))))
      : h('p.muted.small', { text: t('classroom.lesson.no_sites') }));
  const repeat = h('select', { name: 'repeat' },
    h('option', { value: 'once', text: t('classroom.repeat.once') }),
    h('option', { value: 'weekly', text: t('classroom.repeat.weekly') }));
  const count = h('input', { name: 'count', type: 'number', min: 2, max: 52, value: 8 });
  const countLabel = label('classroom.field.count', count);
  countLabel.hidden = true;
  repeat.addEventListener('change', () => { countLabel.hidden = repeat.value !== 'weekly'; count.required = !countLabel.hidden; });
  const submit = h('button', { type: 'submit', text: t('classroom.lesson.schedule') });
  const form = h('form.card', {
    id: 'lesson-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      try {
        const created = await api('POST', '/lessons', {
          course_id: course.id,
          title: title.value.trim(),
          starts_at: zonedRfc3339(date.value, time.value, zone),
          duration_min: Number(duration.value),
          site_ids: boxes.filter((b) => b.checked).map((b) => b.value),
          repeat: repeat.value === 'weekly' ? { kind: 'weekly', count: Number(count.value) } : { kind: 'once' },
        });
        marks.clear();
        status.replaceChildren(message('ok', t('classroom.lesson.scheduled', { n: listOf(created, 'lessons').length || 1 })));
        title.value = '';
        await load();
        if (ctx.lessonsChanged) ctx.lessonsChanged();
      } catch (e) {
        status.replaceChildren(message('error', errText(e)));
        marks.mark(e);
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h3', { text: t('classroom.lesson.new') }),
  h('div.row', {},
    label('classroom.field.title', title),
    label('classroom.field.date', date),
    label('classroom.field.time', time),
    label('classroom.field.duration', duration)),
  siteField,
  h('div.row', {}, label('classroom.field.repeat', repeat), countLabel),
  h('p.muted.small', {}, t('classroom.times_in_zone'), ' ', raw(zone)),
  submit);
  const marks = fieldMarks(form);

  // Who the server admits besides the teacher: admins and the school's heads, as observers. An
  // organizer who is neither gets no button that could only lead to a refusal.
  const mayJoin = (l) => l.teacher_id === me.id || me.role === 'admin' || (ctx.school?.head_user_ids || []).includes(me.id);
  const startKey = (l) => (l.teacher_id === me.id ? 'classroom.lesson.start' : 'classroom.lesson.open');
  const row = (l, now) => h('tr.lesson-row', { 'data-lesson': l.id, 'data-state': lessonState(l, now) },
    h('td', {}, timeEl(l.starts_at, zone), h('div.muted.small', { text: t('classroom.lesson.minutes', { n: l.duration_min }) })),
    h('td', {}, raw(l.title), l.series_id ? h('span.pill', { text: t('classroom.lesson.weekly') }) : null),
    h('td', {}, (l.site_ids || []).length
      ? h('ul.plain', {}, l.site_ids.map((id) => h('li', {}, raw(siteNames.get(id)?.name || id))))
      : h('span.muted', { text: t('classroom.none') })),
    h('td', {}, statusPill(l, now)),
    h('td', {}, h('div.actions', {},
      isOpen(l, now) && mayJoin(l) ? joinLink(l, startKey(l), '.button') : null,
      l.starts_at <= now && !l.cancelled_at
        ? h('a.attendance-link', { href: `${path('/lesson', l.id)}/attendance`, 'data-nav': true, text: t('classroom.lesson.attendance') }) : null,
      manager && isOpen(l, now) ? h('button.secondary.cancel-lesson', {
        type: 'button', text: t('classroom.lesson.cancel'),
        onclick: async () => {
          if (!confirm(t('classroom.lesson.cancel_confirm'))) return;
          try {
            await api('POST', `${path('/lessons', l.id)}/cancel`);
            status.replaceChildren(message('ok', t('classroom.lesson.cancelled')));
            await load();
            if (ctx.lessonsChanged) ctx.lessonsChanged();
          } catch (e) { status.replaceChildren(message('error', errText(e))); }
        },
      }) : null)));

  async function load() {
    try {
      const lessons = listOf(await api('GET', `/lessons?course_id=${encodeURIComponent(course.id)}`), 'lessons');
      const now = Date.now();
      list.replaceChildren(table(['classroom.field.starts_at', 'classroom.field.title', 'classroom.field.sites', 'classroom.status', 'classroom.actions'],
        sortLessons(lessons, now).map((l) => row(l, now)), 'classroom.lesson.empty'));
      // A new lesson usually goes to the classrooms of the latest one.
      const latest = [...lessons].sort((a, b) => b.created_at - a.created_at)[0];
      if (latest && !boxes.some((b) => b.checked)) for (const b of boxes) b.checked = latest.site_ids.includes(b.value);
    } catch (e) {
      list.replaceChildren(message('error', errText(e)));
    }
  }
  load();
  return h('section.classroom-part', { id: 'lessons' }, h('h2', { text: t('classroom.lessons') }), manager ? form : null, status, list);
}

// ---- home page cards ---------------------------------------------------------------------

export function homeCards(me) {
  const cards = [];
  if (MANAGERS.includes(me.role)) {
    cards.push(h('a.card', { href: '/classroom', 'data-nav': true },
      h('h3', { text: t('classroom.title') }), h('p.muted', { text: t('classroom.home.card') })));
  }
  if (me.role === 'teacher') cards.push(lessonsCard('classroom.home.my_lessons', false), coursesCard());
  if (me.role === 'device' || me.role === 'assistant') cards.push(lessonsCard('classroom.home.today', true));
  return cards;
}

// The caller's lessons as the server scopes them (a teacher's own, a terminal's or assistant's
// classrooms'): the next 30 days for a teacher, today for a classroom. A terminal stays on this
// page all day, so its card refreshes itself; a teacher's does not, to spare a weak link.
function lessonsCard(titleKey, today) {
  const list = h('div.lesson-list');
  const card = h('section.card.lessons-card', { 'data-today': String(today) }, h('h3', { text: t(titleKey) }), list);
  let timer = null;
  const load = async () => {
    if (timer !== null && !card.isConnected) {
      clearInterval(timer);
      return;
    }
    const now = Date.now();
    const midnight = new Date(now).setHours(0, 0, 0, 0);
    const from = today ? midnight : now - MAX_LESSON_MS - OVERRUN_MS;
    const to = today ? new Date(midnight + DAY + 2 * HOUR).setHours(0, 0, 0, 0) : now + TEACHER_HORIZON_MS;
    try {
      const data = await api('GET', `/lessons?from=${queryTime(from)}&to=${queryTime(to)}`);
      const lessons = sortLessons(listOf(data, 'lessons').filter((l) => !l.cancelled_at && l.starts_at < to && endsAt(l) > from), now)
        .filter((l) => today || isOpen(l, now))
        .slice(0, 20);
      list.replaceChildren(...(lessons.length ? [h('ul.plain.lessons', {}, lessons.map((l) => homeLesson(l, now, today)))]
        : [h('p.muted.empty', { text: t(today ? 'classroom.home.none_today' : 'classroom.home.none_upcoming') })]));
    } catch (e) {
      list.replaceChildren(message('error', errText(e)));
    }
  };
  load();
  if (today) timer = setInterval(load, HOME_REFRESH_MS);
  return card;
}

// A teacher's courses, where they make their students' personal links.
function coursesCard() {
  const list = h('div');
  const card = h('section.card.courses-card', {}, h('h3', { text: t('classroom.home.my_courses') }), list,
    h('p.muted.small', { text: t('classroom.home.courses_hint') }));
  api('GET', '/courses').then((data) => {
    const courses = listOf(data, 'courses');
    list.replaceChildren(courses.length
      ? h('ul.plain.course-links', {}, courses.map((c) => h('li', {}, h('a', { href: path('/classroom/course', c.id), 'data-nav': true }, raw(c.title)))))
      : h('p.muted.empty', { text: t('classroom.home.no_courses') }));
  }, (e) => list.replaceChildren(message('error', errText(e))));
  return card;
}

function homeLesson(l, now, today) {
  const open = isOpen(l, now);
  return h('li.lesson-row', { 'data-lesson': l.id, 'data-state': lessonState(l, now) },
    h('div.when', { dir: 'ltr' }, timeEl(l.starts_at, null, !today), '–', timeEl(endsAt(l), null, false)),
    h('div.what', {}, raw(l.title), ' ', statusPill(l, now)),
    open ? joinLink(l, today ? 'classroom.home.join' : 'classroom.lesson.start', today ? '.button.big' : '.button') : null);
}
