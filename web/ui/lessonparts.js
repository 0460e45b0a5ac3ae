// Pieces the live lesson views (lesson.js) are built from: text that follows a language switch,
// media elements, local times, the connection indicator, the slide viewer, the chat panel,
// slide prefetching and the TV-remote focus ring. No session state lives here.

import { h, raw } from './app.js';
import { locale, t } from './i18n.js';
import { BUDGETS, loadBudget, saveBudget } from './roomclient.js';

// ---- text that follows a language switch -------------------------------------------------
// Each translated element remembers its key (as on the room page), so switching the language
// re-translates the page in place instead of rebuilding it, which would interrupt the videos.

export function tr(el, key, vars) {
  el.dataset.t = key;
  if (vars) el.dataset.tv = JSON.stringify(vars); else delete el.dataset.tv;
  el.textContent = t(key, vars || {});
  return el;
}

export function trAttr(el, attr, key, vars) {
  const all = el.dataset.tattr ? JSON.parse(el.dataset.tattr) : {};
  all[attr] = [key, vars || {}];
  el.dataset.tattr = JSON.stringify(all);
  el.setAttribute(attr, t(key, vars || {}));
  return el;
}

export function retranslate(root) {
  for (const el of root.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t, el.dataset.tv ? JSON.parse(el.dataset.tv) : {});
  for (const el of root.querySelectorAll('[data-tattr]')) {
    for (const [attr, [key, vars]] of Object.entries(JSON.parse(el.dataset.tattr))) el.setAttribute(attr, t(key, vars));
  }
  for (const el of root.querySelectorAll('time[data-ms]')) el.textContent = formatTime(Number(el.dataset.ms), el.dataset.style);
}

// A translated element: tx('button', 'lesson.hand.raise', null, {id: 'hand'}).
export const tx = (spec, key, vars, attrs) => tr(h(spec, attrs), key, vars);

// A status or error line, announced to screen readers.
// Data used as a phone's data counter shows it (1 MB = 1000 KB): KB below 1 MB, else MB with
// one decimal.
export function showDataUsed(el, bytes) {
  if (bytes < 1e6) tr(el, 'room.data_used_kb', { n: Math.floor(bytes / 1e3) });
  else tr(el, 'room.data_used_mb', { n: (bytes / 1e6).toFixed(1) });
}

// What a weak link needs on a page: the cap on what the server sends this device (`client` keeps
// it per device: RoomClient.setBudget) and the notice while the server sends no video. `client`
// is a function giving the page's current RoomClient (a lesson page replaces it on reconnect).
export function linkControls(client) {
  const c = client() || { budget: loadBudget(), audioOnly: false };
  const choose = (kbps) => {
    const now = client();
    if (now) now.setBudget(kbps);
    else saveBudget(kbps);
  };
  const select = h('select', { id: 'budget', onchange: () => choose(select.value ? Number(select.value) : null) },
    BUDGETS.map((kbps) => (kbps === null
      ? tx('option', 'room.budget.none', null, { value: '' })
      : tx('option', 'room.budget.kbps', { n: kbps }, { value: String(kbps) }))));
  select.value = c.budget === null ? '' : String(c.budget);
  const audioOnly = tx('p.audio-only', 'room.audio_only', null, { id: 'audio-only', role: 'status', hidden: !c.audioOnly });
  return {
    budget: h('label.budget', {}, tx('span', 'room.budget.label'), select),
    audioOnly,
    showReception: (on) => { audioOnly.hidden = !on; },
  };
}

export const notice = (kind, key, vars) => tx(`p.msg.${kind}`, key, vars, { role: kind === 'error' ? 'alert' : 'status' });

export function bumpRenders() {
  const root = document.documentElement;
  root.dataset.renders = String(Number(root.dataset.renders || 0) + 1);
}

// ---- times -------------------------------------------------------------------------------

// A server time as UTC ms, whether it came as ms, seconds or an ISO string (null if none).
export function toMs(v) {
  if (typeof v === 'number' && Number.isFinite(v)) return v < 1e11 ? v * 1000 : v;
  if (typeof v === 'string' && v) {
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

// Numbers only (no month or weekday names), so every language reads it, in the viewer's zone.
function formatTime(ms, style) {
  const opts = style === 'date'
    ? { year: 'numeric', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }
    : { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  try {
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  } catch {
    return new Intl.DateTimeFormat('zh-CN', opts).format(new Date(ms));
  }
}

// A local time that is reformatted on a language switch; style 'date' adds the date.
export function timeEl(v, style = 'time') {
  const ms = toMs(v);
  if (ms === null) return h('span', { text: '–' });
  return h('time', { datetime: new Date(ms).toISOString(), 'data-ms': String(ms), 'data-style': style, text: formatTime(ms, style) });
}

// ---- media -------------------------------------------------------------------------------

// Shows `track` in a media element, only touching it when the track changes.
export function setMedia(el, track, onBlocked) {
  if (el.tongxinTrack === track) return;
  el.tongxinTrack = track;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) {
    el.play().catch((e) => {
      if (e && e.name === 'NotAllowedError' && onBlocked) onBlocked(el);
    });
  }
}

// A muted <video>: sound plays through separate <audio> elements, so pictures always autoplay.
export function videoEl(attrs) {
  const v = h('video', { autoplay: true, playsinline: true, ...attrs });
  v.muted = true;
  return v;
}

// A video with a caption over it and a placeholder shown while there is no picture.
export function videoBox(spec, videoAttrs, emptyKey) {
  const video = videoEl(videoAttrs);
  const caption = h('div.caption');
  const empty = tx('div.video-empty', emptyKey);
  const el = h(spec, {}, video, empty, caption);
  return {
    el, video, caption, empty,
    show(track) {
      setMedia(video, track);
      el.dataset.live = String(!!track);
      empty.hidden = !!track;
    },
  };
}

// ---- the connection indicator -------------------------------------------------------------

export const CONNECTION_STATES = ['connecting', 'good', 'weak', 'reconnecting', 'offline', 'ended'];

// Signal bars and a word: connecting, good, weak, reconnecting, offline (the device lost its
// network), ended. `attrs` gives the id.
export function connectionIndicator(attrs) {
  const icon = h('span.conn-icon', { 'aria-hidden': 'true' }, h('i'), h('i'), h('i'));
  const text = h('span.conn-text');
  const el = h('div.connection', { role: 'status', ...attrs }, icon, text);
  const set = (state) => {
    if (!CONNECTION_STATES.includes(state) || el.dataset.state === state) return;
    el.dataset.state = state;
    tr(text, `lesson.conn.${state}`);
  };
  set('connecting');
  return { el, set };
}

// What the link quality rating of our own connection means to the people in the room.
export const ratingState = (rating) => (rating === 'poor' || rating === 'lost' ? 'weak' : 'good');

// ---- slides ------------------------------------------------------------------------------

export const slideUrl = (page) => `/api/v1/slides/${encodeURIComponent(page.hash)}.jpg`;

// The current slide page, `#slide img[data-page]` (0-based page, as in the lesson state).
export function slideView() {
  const img = h('img', { decoding: 'async', hidden: true });
  const empty = tx('p.slide-empty', 'lesson.slides.none');
  const counter = h('span.slide-counter');
  const el = h('div.slide', { id: 'slide' }, img, empty, counter);
  return {
    el, img,
    show(deck, page) {
      const p = deck && deck.pages && deck.pages[page];
      if (!p) {
        img.hidden = true;
        img.removeAttribute('src');
        delete img.dataset.page;
        delete img.dataset.deck;
        empty.hidden = false;
        counter.hidden = true;
        return;
      }
      const url = slideUrl(p);
      if (img.getAttribute('src') !== url) img.src = url;
      img.width = p.width;
      img.height = p.height;
      img.dataset.page = String(page);
      img.dataset.deck = deck.id;
      trAttr(img, 'alt', 'lesson.slides.page_of', { n: page + 1, total: deck.pages.length });
      tr(counter, 'lesson.slides.page_of', { n: page + 1, total: deck.pages.length });
      img.hidden = false;
      empty.hidden = true;
      counter.hidden = false;
    },
  };
}

// Loads slide pages into the HTTP cache (they are immutable) one at a time, so a page turn is
// instant without the prefetch crowding out the live audio on a thin link.
export class Prefetcher {
  constructor() {
    this.queue = [];
    this.seen = new Set();
    this.busy = false;
  }

  add(pages) {
    for (const p of pages) {
      if (!p || !p.hash || this.seen.has(p.hash)) continue;
      this.seen.add(p.hash);
      this.queue.push(slideUrl(p));
    }
    this.next();
  }

  next() {
    if (this.busy || !this.queue.length) return;
    this.busy = true;
    const img = new Image();
    img.onload = img.onerror = () => {
      this.busy = false;
      this.next();
    };
    img.src = this.queue.shift();
  }

  stop() {
    this.queue = [];
  }
}

// ---- chat --------------------------------------------------------------------------------

// The chat log and, unless `readOnly`, the line to write in. `send(text)` returns whether the
// line went out; `nameOf(identity)` names the sender.
export class ChatPanel {
  constructor({ readOnly, send, nameOf }) {
    this.send = send;
    this.nameOf = nameOf;
    this.log = h('ol.chat-log', { id: 'chat-log', 'aria-live': 'polite' });
    this.lockedNote = notice('ok', 'lesson.chat.locked_note');
    this.lockedNote.id = 'chat-locked-note';
    this.lockedNote.hidden = true;
    this.input = h('input', { id: 'chat-input', autocomplete: 'off', maxlength: 1000 });
    trAttr(this.input, 'placeholder', 'room.chat.placeholder');
    trAttr(this.input, 'aria-label', 'room.chat.placeholder');
    this.sendButton = tx('button', 'room.chat.send', null, { id: 'chat-send', type: 'submit', disabled: true });
    this.form = readOnly ? null : h('form.chat-form', {
      onsubmit: (ev) => {
        ev.preventDefault();
        const text = this.input.value.trim();
        if (text && this.send(text)) this.input.value = '';
      },
    }, this.input, this.sendButton);
    this.tools = h('div.chat-tools');
    this.el = h('aside.chat.lesson-chat', {}, h('div.chat-head', {}, tx('h2', 'room.chat.title'), this.tools),
      this.log, this.lockedNote, this.form);
  }

  // `canSend`: allowed and connected; `locked`: the teacher locked the chat (shown as a note
  // to those it silences).
  setAvailable(canSend, locked) {
    this.input.disabled = !canSend;
    this.sendButton.disabled = !canSend;
    this.lockedNote.hidden = !locked;
    this.el.dataset.locked = String(!!locked);
  }

  add(from, text, self) {
    const who = from === null ? tx('span.chat-who', 'room.chat.service') : h('span.chat-who', {}, raw(this.nameOf(from)));
    if (self) tr(who, 'room.you');
    this.log.append(h('li.chat-msg', { 'data-from': from ?? '', 'data-self': String(!!self) }, who, h('span.chat-text', {}, raw(text))));
    while (this.log.children.length > 300) this.log.firstElementChild.remove();
    this.log.scrollTop = this.log.scrollHeight;
  }
}

// ---- the TV remote -----------------------------------------------------------------------

const FOCUSABLE = 'button, input, select, a[href], [tabindex="0"]';

function focusables(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((el) => !el.disabled && !el.closest('[hidden]') &&
    el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden');
}

const center = (r) => ({ x: r.left + r.width / 2, y: r.top + r.height / 2 });

// The focusable control nearest to `from` in a direction, by screen position (so it works the
// same in right-to-left pages): distance along the direction plus twice the sideways offset.
function nearest(from, candidates, key) {
  const a = from.getBoundingClientRect();
  const ca = center(a);
  let best = null;
  let bestScore = Infinity;
  for (const el of candidates) {
    if (el === from) continue;
    const b = el.getBoundingClientRect();
    const cb = center(b);
    let along;
    let side;
    if (key === 'ArrowRight') { along = cb.x - ca.x; side = Math.abs(cb.y - ca.y); if (b.left < a.right - 4 && along < a.width / 2) continue; }
    else if (key === 'ArrowLeft') { along = ca.x - cb.x; side = Math.abs(cb.y - ca.y); if (b.right > a.left + 4 && along < a.width / 2) continue; }
    else if (key === 'ArrowDown') { along = cb.y - ca.y; side = Math.abs(cb.x - ca.x); if (b.top < a.bottom - 4 && along < a.height / 2) continue; }
    else { along = ca.y - cb.y; side = Math.abs(cb.x - ca.x); if (b.bottom > a.top + 4 && along < a.height / 2) continue; }
    if (along <= 0) continue;
    const score = along + 2 * side;
    if (score < bestScore) { bestScore = score; best = el; }
  }
  return best;
}

// Arrow keys move the focus between the controls inside `root` and Enter presses the focused
// button (as browsers do) or opens a list box's choices, so an assistant can drive the page with
// a TV remote: the arrows always move, never change a value by surprise. Returns a function
// that stops it.
export function focusRing(root, first) {
  const onKey = (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || !root.isConnected) return;
    if (ev.key === 'Enter' && document.activeElement && document.activeElement.tagName === 'SELECT' && root.contains(document.activeElement)) {
      ev.preventDefault();
      try { document.activeElement.showPicker(); } catch { /* no picker here: arrows still work in it once open */ }
      return;
    }
    if (!['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown'].includes(ev.key)) return;
    const list = focusables(root);
    if (!list.length) return;
    const cur = document.activeElement;
    if (!cur || cur === document.body || !root.contains(cur)) {
      ev.preventDefault();
      (list.includes(first && first()) ? first() : list[0]).focus();
      return;
    }
    const vertical = ev.key === 'ArrowUp' || ev.key === 'ArrowDown';
    if (!vertical && cur.tagName === 'INPUT' && cur.type !== 'number') return; // the caret moves
    ev.preventDefault();
    let target = nearest(cur, list, ev.key);
    if (!target) {
      // Nothing that way on screen: go on in reading order, wrapping round.
      const i = list.indexOf(cur);
      const forward = ev.key === 'ArrowDown' || ev.key === (document.documentElement.dir === 'rtl' ? 'ArrowLeft' : 'ArrowRight');
      target = list[(i + (forward ? 1 : -1) + list.length) % list.length];
    }
    if (target) target.focus();
  };
  document.addEventListener('keydown', onKey);
  return () => document.removeEventListener('keydown', onKey);
}
