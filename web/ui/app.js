// The Tongxin web shell: login, a home page per role, account administration, settings.
// Plain ES modules and the DOM; no framework, so a cheap phone on 2G loads it quickly.

import { api, ApiError } from './api.js';
import { LOCALES, initialLocale, locale, setLocale, t } from './i18n.js';
import { roomsView } from './rooms.js';
import { classroomView, courseView, homeCards } from './classroom.js';

const app = document.getElementById('app');
let me = null;

// h('tag.class', {attrs}, ...children): builds elements without innerHTML, so user data is
// always text, never markup.
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

// User-provided text (names, usernames) is marked data-raw: it is not ours to translate.
export const raw = (text) => h('span', { 'data-raw': true, text });

const FIELD_KEYS = {
  username: 'users.username', display_name: 'users.display_name', password: 'login.password',
  new_password: 'settings.new_password', role: 'users.role', locale: 'settings.language',
};

export function errorText(e) {
  if (!(e instanceof ApiError)) return t('error.internal');
  if (e.code === 'validation') return t('error.validation', { field: t(FIELD_KEYS[e.field] || 'error.field_unknown') });
  const key = `error.${e.code}`;
  return ['network', 'bad_request', 'unauthorized', 'forbidden', 'not_found', 'conflict', 'too_many_requests',
    'method_not_allowed', 'internal'].includes(e.code) ? t(key) : t('error.internal');
}

export function message(kind, text) { return h(`p.msg.${kind}`, { role: kind === 'error' ? 'alert' : 'status', text }); }

export function languageSelect(onChange) {
  const sel = h('select', { id: 'lang', 'aria-label': t('nav.language'), onchange: (ev) => onChange(ev.target.value) },
    LOCALES.map((l) => h('option', { value: l.tag, lang: l.tag, selected: l.tag === locale(), text: l.name })));
  return h('label.lang-switch', {}, h('span', { text: t('nav.language') }), sel);
}

async function changeLocale(tag) {
  if (tag === locale()) return;
  await setLocale(tag);
  if (me) {
    try { me = await api('PUT', '/me/locale', { locale: tag }); } catch (e) { console.warn('locale not saved', e); }
  }
  render();
}

// ---- routing ---------------------------------------------------------------------------

// One course's page (classroom.js): its students, links and lessons.
const COURSE_PAGE = /^\/classroom\/course\/([^/]+)\/?$/;

const ROUTES = {
  '/': homeView,
  '/admin/users': usersView,
  '/admin/rooms': roomsView,
  '/classroom': () => classroomView(me),
  '/settings': settingsView,
};

function go(path) {
  history.pushState({}, '', path);
  render();
}

window.addEventListener('popstate', render);
document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-nav]');
  if (a && !ev.ctrlKey && !ev.metaKey) { ev.preventDefault(); go(a.getAttribute('href')); }
});

// A room page needs no login: the join token in the link is the credential.
const isRoomPage = () => location.pathname.startsWith('/room/');
// Live lessons (lesson.js): a student's link /l#{secret} (or an old /l/{secret}) needs no login
// (the secret is the credential); /lesson/{id} joins with the account; /lesson/{id}/attendance
// is a report.
const isLessonLink = () => /^\/l(\/|$)/.test(location.pathname);
const LESSON_PAGE = /^\/lesson\/([^/]+)\/?$/;
const ATTENDANCE_PAGE = /^\/lesson\/([^/]+)\/attendance\/?$/;

function showLessonPage() {
  import('./lesson.js').then((m) => {
    m.showLesson(app, me);
    countRender();
  }, (e) => console.error('cannot load the lesson page', e));
}

function render() {
  if (isRoomPage()) {
    import('./room.js').then((m) => {
      m.showRoom(app);
      countRender();
    }, (e) => console.error('cannot load the room page', e));
    return;
  }
  if (isLessonLink() || (me && LESSON_PAGE.test(location.pathname))) {
    showLessonPage();
    return;
  }
  const attendance = ATTENDANCE_PAGE.exec(location.pathname);
  if (!me) {
    app.replaceChildren(loginView());
  } else if (attendance) {
    const main = h('div');
    app.replaceChildren(shell(location.pathname, main));
    import('./lesson.js').then((m) => m.showAttendance(main, decodeURIComponent(attendance[1])),
      (e) => console.error('cannot load the attendance page', e));
  } else if (COURSE_PAGE.test(location.pathname)) {
    app.replaceChildren(shell('/classroom', courseView(me, decodeURIComponent(COURSE_PAGE.exec(location.pathname)[1]))));
  } else {
    const path = location.pathname in ROUTES ? location.pathname : '/';
    app.replaceChildren(shell(path, ROUTES[path]()));
  }
  countRender();
}

function countRender() {
  // Lets tests (and anyone debugging) see that a render for this locale has completed.
  const root = document.documentElement;
  root.dataset.renders = String(Number(root.dataset.renders || 0) + 1);
}

// ---- the shell -------------------------------------------------------------------------

function navLink(path, key, current) {
  return h('a', { href: path, 'data-nav': true, 'aria-current': path === current ? 'page' : null, text: t(key) });
}

function shell(path, content) {
  const links = [navLink('/', 'nav.home', path)];
  if (me.role === 'admin') links.push(navLink('/admin/users', 'nav.users', path), navLink('/admin/rooms', 'nav.rooms', path));
  if (me.role === 'admin' || me.role === 'organizer') links.push(navLink('/classroom', 'nav.classroom', path));
  links.push(navLink('/settings', 'nav.settings', path));
  const nav = h('nav.nav', { 'aria-label': t('nav.label') },
    h('div.brand', {}, h('img', { src: '/icon.svg', alt: '' }), h('span', { text: t('app.name') })),
    links,
    h('div.spacer'),
    h('div.who', {}, raw(me.display_name), ' · ', h('span', { text: t(`role.${me.role}`) })),
    languageSelect(changeLocale),
    h('button.secondary', { id: 'logout', onclick: logout, text: t('nav.logout') }));
  return h('div.shell', {}, nav, h('main', { id: 'main' }, content));
}

async function logout() {
  try { await api('POST', '/auth/logout'); } catch { /* the session may already be gone */ }
  me = null;
  history.replaceState({}, '', '/');
  render();
}

// ---- login -----------------------------------------------------------------------------

function loginView() {
  const status = h('div');
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', text: t('login.submit') });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      status.replaceChildren();
      try {
        const res = await api('POST', '/auth/login', { username: username.value, password: password.value });
        me = res.user;
        if (me.locale !== locale()) await setLocale(me.locale);
        render();
      } catch (e) {
        const text = e.code === 'unauthorized' ? t('login.failed') : errorText(e);
        status.replaceChildren(message('error', text));
        submit.disabled = false;
      }
    },
  },
  h('label', {}, h('span', { text: t('login.username') }), username),
  h('label', {}, h('span', { text: t('login.password') }), password),
  status, submit);
  return h('section.login', {},
    h('div.brand', {}, h('img', { src: '/icon.svg', alt: '' }), h('h1', { text: t('app.name') })),
    h('p.tagline', { text: t('app.tagline') }),
    h('div.card', {}, h('h2', { text: t('login.title') }), form),
    languageSelect(async (tag) => { await setLocale(tag); render(); }));
}

// ---- home ------------------------------------------------------------------------------

function homeView() {
  const cards = [];
  if (me.role === 'admin') {
    cards.push(h('a.card', { href: '/admin/users', 'data-nav': true },
      h('h3', { text: t('nav.users') }), h('p.muted', { text: t('home.card.users') })));
  }
  cards.push(...homeCards(me));
  cards.push(h('a.card', { href: '/settings', 'data-nav': true },
    h('h3', { text: t('nav.settings') }), h('p.muted', { text: t('home.card.settings') })));
  return h('section', { 'data-role': me.role },
    h('h1', {}, t('home.hello'), ' ', raw(me.display_name)),
    h('p', {}, h('span.muted', { text: `${t('home.your_role')}: ` }), h('strong', { text: t(`role.${me.role}`) })),
    h('p', { text: t(`home.intro.${me.role}`) }),
    h('div.cards', {}, cards));
}

// ---- accounts (admin) ------------------------------------------------------------------

const ROLES = ['admin', 'teacher', 'assistant', 'doctor', 'village_doctor', 'organizer', 'device'];

function usersView() {
  const status = h('div');
  const tbody = h('tbody');
  const count = h('p.muted');
  const load = async () => {
    try {
      const users = await api('GET', '/admin/users');
      count.textContent = t('users.count', { n: users.length });
      tbody.replaceChildren(...users.map((u) => userRow(u, status, load)));
    } catch (e) { status.replaceChildren(message('error', errorText(e))); }
  };
  const username = h('input', { name: 'username', required: true, autocapitalize: 'none' });
  const displayName = h('input', { name: 'display_name', required: true });
  const role = h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r, text: t(`role.${r}`) })));
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const form = h('form.card', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api('POST', '/admin/users', { username: username.value, display_name: displayName.value, role: role.value, password: password.value });
        form.reset();
        status.replaceChildren(message('ok', t('users.created')));
        load();
      } catch (e) { status.replaceChildren(message('error', errorText(e))); }
    },
  },
  h('h2', { text: t('users.new') }),
  h('div.row', {},
    h('label', {}, h('span', { text: t('users.username') }), username),
    h('label', {}, h('span', { text: t('users.display_name') }), displayName),
    h('label', {}, h('span', { text: t('users.role') }), role),
    h('label', {}, h('span', { text: t('users.password') }), password)),
  h('button', { type: 'submit', text: t('users.create') }));
  load();
  return h('section', {},
    h('h1', { text: t('nav.users') }), form, status, count,
    h('table', {},
      h('thead', {}, h('tr', {}, ['users.username', 'users.display_name', 'users.role', 'users.status', 'users.actions']
        .map((k) => h('th', { text: t(k) })))),
      tbody));
}

function userRow(u, status, reload) {
  const act = async (body, okKey) => {
    try {
      await api('PATCH', `/admin/users/${encodeURIComponent(u.id)}`, body);
      status.replaceChildren(message('ok', t(okKey)));
      reload();
    } catch (e) { status.replaceChildren(message('error', errorText(e))); }
  };
  const toggle = h('button.secondary', {
    text: t(u.disabled ? 'users.enable' : 'users.disable'),
    onclick: () => act({ disabled: !u.disabled }, 'users.saved'),
  });
  const reset = h('button.secondary', {
    text: t('users.reset_password'),
    onclick: () => {
      const pw = prompt(t('users.new_password_prompt'));
      if (pw) act({ password: pw }, 'users.password_reset_done');
    },
  });
  return h('tr', {},
    h('td', {}, raw(u.username)), h('td', {}, raw(u.display_name)),
    h('td', { text: t(`role.${u.role}`) }),
    h('td', { text: t(u.disabled ? 'users.disabled' : 'users.enabled') }),
    h('td', {}, h('div.actions', {}, toggle, reset)));
}

// ---- settings --------------------------------------------------------------------------

function settingsView() {
  const status = h('div');
  const current = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const form = h('form.card', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api('PUT', '/me/password', { current_password: current.value, new_password: next.value });
        me = null;
        app.replaceChildren(loginView());
        app.querySelector('.card').prepend(message('ok', t('settings.password_changed')));
      } catch (e) {
        status.replaceChildren(message('error', e.code === 'forbidden' ? t('settings.password_wrong') : errorText(e)));
      }
    },
  },
  h('h2', { text: t('settings.password') }),
  h('label', {}, h('span', { text: t('settings.current_password') }), current),
  h('label', {}, h('span', { text: t('settings.new_password') }), next),
  status,
  h('button', { type: 'submit', text: t('common.save') }));
  return h('section', {},
    h('h1', { text: t('nav.settings') }),
    h('div.card', {}, h('h2', { text: t('settings.language') }), languageSelect(changeLocale)),
    form);
}

// ---- start -----------------------------------------------------------------------------

async function start() {
  await setLocale(initialLocale());
  if (isRoomPage() || isLessonLink()) {
    render();
    return;
  }
  try {
    me = await api('GET', '/me');
    if (me.locale !== locale()) await setLocale(me.locale);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) console.warn(e);
    me = null;
  }
  render();
}

start();
