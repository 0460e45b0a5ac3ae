// The administrator's view of live rooms (GET /api/v1/rooms): who is in each room, what they
// send, and how their link is doing. Refreshed every 3 s while it is shown.

import { api } from './api.js';
import { locale, t } from './i18n.js';
import { h, raw, message, errorText } from './app.js';

const REFRESH_MS = 3000;
const ROOM_ROLES = ['teacher', 'classroom', 'student', 'observer', 'doctor', 'patient', 'village_doctor', 'guest'];
const KINDS = ['rtc', 'whip', 'whep'];
const SOURCES = ['microphone', 'camera', 'screen'];
const RATINGS = ['good', 'fair', 'poor', 'lost'];
// How a participant's media travels (plain UDP, ICE over TCP, a TURN relay), by protocol name.
const PATH_NAMES = { udp: 'UDP', tcp: 'TCP', turn: 'TURN' };

export function roomsView() {
  const status = h('div');
  const updated = h('p.muted');
  const list = h('div.rooms-list');
  const section = h('section', { 'data-view': 'rooms' }, h('h1', { text: t('nav.rooms') }), status, updated, list);
  let timer = null;
  const load = async () => {
    // Stops refreshing once another page replaced this one.
    if (timer !== null && !section.isConnected) {
      clearInterval(timer);
      return;
    }
    try {
      const data = await api('GET', '/rooms');
      const rooms = (data && data.rooms) || [];
      status.replaceChildren();
      updated.textContent = t('rooms.updated', { time: new Date().toLocaleTimeString(locale(), { hour12: false }) });
      list.replaceChildren(...(rooms.length ? rooms.map(roomCard) : [h('p', { text: t('rooms.empty') })]));
    } catch (e) {
      status.replaceChildren(message('error', errorText(e)));
    }
  };
  load();
  timer = setInterval(load, REFRESH_MS);
  return section;
}

function roomCard(room) {
  const people = room.participants || [];
  return h('article.card.room-card', { 'data-room': room.name },
    h('h2', {}, raw(room.name), ' ',
      h('span.pill', { text: t(room.managed ? 'rooms.managed' : 'rooms.ad_hoc') })),
    h('p.muted', { text: t('rooms.participants', { n: people.length }) }),
    people.length ? h('div.table-scroll', {}, h('table', {},
      h('thead', {}, h('tr', {}, ['rooms.col.participant', 'rooms.col.role', 'rooms.col.kind', 'rooms.col.permissions',
        'rooms.col.tracks', 'rooms.col.quality', 'rooms.col.path'].map((k) => h('th', { text: t(k) })))),
      h('tbody', {}, people.map(participantRow)))) : null);
}

function participantRow(p) {
  const perms = p.permissions || {};
  const granted = ['publish', 'subscribe', 'publish_data'].filter((k) => perms[k]);
  const tracks = (p.tracks || []).filter((x) => SOURCES.includes(x.source));
  return h('tr', { 'data-identity': p.identity },
    h('td', {},
      h('div', {}, raw(p.name || p.identity)),
      p.name ? h('div.muted.small', {}, raw(p.identity)) : null,
      p.hidden ? h('span.pill', { text: t('rooms.hidden') }) : null),
    h('td', {}, ROOM_ROLES.includes(p.role) ? t(`roomrole.${p.role}`) : raw(p.role || '')),
    h('td', {}, KINDS.includes(p.kind) ? t(`rooms.kind.${p.kind}`) : raw(p.kind || '')),
    h('td', {}, granted.length ? granted.map((k) => h('span.pill', { text: t(`rooms.perm.${k}`) })) : t('rooms.none')),
    h('td', {}, tracks.length
      ? h('ul.plain', {}, tracks.map((x) => h('li', { 'data-track': x.id, 'data-muted': String(!!x.muted) },
        t(`room.source.${x.source}`), x.muted ? ` · ${t('rooms.track_off')}` : '')))
      : t('rooms.none')),
    h('td', {}, qualityCell(p.quality)),
    h('td', { 'data-path': p.path || '' }, PATH_NAMES[p.path]
      ? [h('strong', {}, raw(PATH_NAMES[p.path])), ' ', h('span.muted.small', { text: t(`rooms.path.${p.path}`) })]
      : h('span.muted', { text: '–' })));
}

function qualityCell(q) {
  if (!q || !RATINGS.includes(q.rating)) return h('span.muted', { text: t('rooms.no_quality') });
  return h('div', {},
    h('span.quality', { 'data-quality': q.rating, text: t(`room.quality.${q.rating}`) }),
    h('div.muted.small', {
      text: t('room.quality.detail', {
        loss: (Number(q.loss || 0) * 100).toFixed(1),
        rtt: q.rtt_ms === null || q.rtt_ms === undefined ? '–' : q.rtt_ms,
        kbps: q.bitrate_kbps ?? 0,
      }),
    }));
}
