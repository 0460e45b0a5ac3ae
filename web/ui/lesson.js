// The live lesson pages. /lesson/{id} (logged in) joins the lesson and shows the view of the
// role the server grants: the teacher's console, a remote classroom's big screen, or a hidden
// observer's view. /l#{secret} is a student's personal link (no login): the course and its
// lessons, and the lesson itself while one is open. /lesson/{id}/attendance is the report.
//
// The link's secret lives in the URL fragment, which the browser never sends: it reaches the
// server only in request bodies, so access logs, proxies and Referer headers never see it. Old
// links of the form /l/{secret} are rewritten to the fragment form before anything is fetched.
//
// A `LessonSession` owns the join (token, lesson, shared state, decks) and one `RoomClient`; the
// role's view draws from it. The shared state arrives with the join and then as `lesson_state`
// data messages, applied by `version` so an old one never overwrites a newer one.

import { api, ApiError } from './api.js';
import { h, raw, errorText, languageSelect } from './app.js';
import { setLocale } from './i18n.js';
import { RoomClient } from './roomclient.js';
import {
  tx, notice, retranslate, bumpRenders, toMs, timeEl, setMedia, connectionIndicator, ratingState, ChatPanel, Prefetcher,
} from './lessonparts.js';
import { TeacherView, TerminalView, WatchView } from './lessonviews.js';

export { showAttendance } from './lessonviews.js';

const ROLES = ['teacher', 'classroom', 'student', 'observer'];
const REJOIN_MAX_MS = 30000;
const LINK_POLL_MS = 60000;
const enc = encodeURIComponent;

// The lifetime of a join token from its own claims (exp − iat), so a phone whose clock is off
// still refreshes it in time; null when the token does not say.
function tokenLifetimeMs(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (part.length % 4)) % 4);
    const claims = JSON.parse(atob(b64));
    return Number.isFinite(claims.exp) && Number.isFinite(claims.iat) ? (claims.exp - claims.iat) * 1000 : null;
  } catch {
    return null;
  }
}

// A lesson of a student link that can be joined now.
function isOpen(lesson, now) {
  if (['ended', 'cancelled', 'over', 'closed'].includes(lesson.phase)) return false;
  if (['open', 'live'].includes(lesson.phase)) return true;
  const w = lesson.window || {};
  const opens = toMs(w.opens_at);
  const closes = toMs(w.closes_at);
  return opens !== null && closes !== null && opens <= now && now < closes;
}

function phaseKey(lesson, now) {
  if (['ended', 'cancelled'].includes(lesson.phase)) return `lesson.phase.${lesson.phase}`;
  if (isOpen(lesson, now)) return 'lesson.phase.open';
  const opens = toMs(lesson.window && lesson.window.opens_at) ?? toMs(lesson.starts_at);
  return opens !== null && now < opens ? 'lesson.phase.upcoming' : 'lesson.phase.ended';
}

// Rewrites an old-style /l/{secret} address to /l#{secret} in place (no reload, no new history
// entry), so the secret is not sent again by a reload or kept in the path of a bookmark.
function linkToFragment() {
  const m = /^\/l\/([^/]+)\/?$/.exec(location.pathname);
  if (m) history.replaceState(history.state, '', `/l#${m[1]}`);
}

// What identifies the page shown: the path, and for a student's link also its secret (pasting
// another link into the same tab changes only the fragment).
function pageKey() {
  const path = location.pathname.replace(/\/+$/, '');
  return path === '/l' ? `${path}${location.hash}` : path;
}

function linkSecret() {
  try {
    return decodeURIComponent(location.hash.slice(1));
  } catch {
    return location.hash.slice(1); // a stray % in a hand-typed link: take it as written
  }
}

class LessonSession {
  constructor(key, me) {
    this.path = key;
    this.me = me;
    const [, kind, id] = location.pathname.split('/');
    this.secret = kind === 'l' ? linkSecret() : null;
    this.lessonId = kind === 'lesson' ? decodeURIComponent(id || '') : null;
    this.join = null;
    this.role = null;
    this.state = null;
    this.decks = [];
    this.sites = new Map();
    this.client = null;
    this.view = null;
    this.joinedOnce = false;
    this.ended = false;
    this.destroyed = false;
    this.timers = new Set();
    this.rejoinDelay = 0;
    this.audio = new Map(); // identity -> <audio>
    this.audioBlocked = new Set();
    this.prefetch = new Prefetcher();
    this.usedBefore = 0; // bytes the connections of earlier clients carried
    this.muted = null; // our microphone and camera mute state, kept across reconnections
    // A device that knows it lost its network says so at once, before the socket notices.
    this.onOffline = () => { if (!this.ended && this.client) this.conn.set('offline'); };
    window.addEventListener('offline', this.onOffline);

    this.conn = connectionIndicator({ id: 'connection' });
    this.titleSlot = h('div.lesson-title');
    this.langSlot = h('div.room-lang');
    this.status = h('div.room-status', { id: 'lesson-status', 'aria-live': 'polite' });
    this.body = h('div.lesson-body');
    this.audioBox = h('div.audio-box', { hidden: true });
    this.audioButton = tx('button.enable-audio', 'room.enable_audio', null, { id: 'enable-audio', hidden: true, onclick: () => this.unblockAudio() });
    this.root = h('section.room.lesson', { id: 'lesson-view', 'data-role': this.secret !== null ? 'student' : '', 'data-state': 'loading' },
      h('header.room-bar.lesson-bar', {},
        h('div.brand', {}, h('img', { src: '/icon.svg', alt: '' }), tx('span', 'app.name')),
        this.titleSlot, h('div.spacer'), this.conn.el, this.langSlot),
      this.status, this.body, this.audioBox);
    this.conn.el.hidden = true;
    this.renderLang();
  }

  // What tests (and anyone debugging) can read on window.tongxinLesson.
  expose() {
    const s = this;
    window.tongxinLesson = {
      get role() { return s.role; },
      get state() { return s.state && JSON.parse(JSON.stringify(s.state)); },
      get decks() { return s.decks.map((d) => ({ id: d.id, pages: d.pages.length })); },
      get connection() { return s.conn.el.dataset.state; },
      get ended() { return s.ended; },
      get client() { return s.client; },
      get camera() { return s.client && { ...s.client.cameraEncoding }; },
    };
  }

  renderLang() {
    this.langSlot.replaceChildren(languageSelect(async (tag) => {
      await setLocale(tag);
      retranslate(this.root);
      const focused = this.langSlot.contains(document.activeElement);
      this.renderLang();
      if (focused) this.langSlot.querySelector('select').focus(); // a TV remote stays where it was
      if (this.me) api('PUT', '/me/locale', { locale: tag }).catch((e) => console.warn('locale not saved', e));
      bumpRenders();
    }));
  }

  setPhase(phase) {
    this.root.dataset.state = phase;
  }

  say(kind, key, vars) {
    this.status.replaceChildren(notice(kind, key, vars));
  }

  sayText(kind, text) {
    this.status.replaceChildren(h(`p.msg.${kind}`, { role: kind === 'error' ? 'alert' : 'status', text }));
  }

  later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); if (!this.destroyed) fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  start() {
    this.expose();
    if (this.secret !== null) this.openLink();
    else this.tryJoin();
  }

  destroy() {
    this.destroyed = true;
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    this.prefetch.stop();
    window.removeEventListener('offline', this.onOffline);
    if (this.view) this.view.destroy();
    this.dropClient();
    for (const el of this.audio.values()) setMedia(el, null);
    this.root.remove();
  }

  // ---- joining ---------------------------------------------------------------------------

  fetchJoin() {
    return this.secret !== null
      ? api('POST', '/lesson-links/join', { secret: this.secret })
      : api('POST', `/lessons/${enc(this.lessonId)}/join`);
  }

  async tryJoin() {
    clearTimeout(this.retryTimer);
    this.say('ok', 'lesson.joining');
    let resp;
    try {
      resp = await this.fetchJoin();
    } catch (e) {
      if (!this.destroyed) this.joinFailed(e, false);
      return;
    }
    if (!this.destroyed) this.enter(resp);
  }

  // A join refused or not reached. `live`: we were in the lesson before (a rejoin). The
  // server's refusal codes say why (not_open_yet, over, cancelled, not_invited, link_revoked);
  // the status alone is enough when it gives none.
  joinFailed(e, live) {
    const status = e instanceof ApiError ? e.status : 0;
    const code = e instanceof ApiError ? e.code : null;
    if ((status === 409 || status === 410) && live) {
      this.showEnded();
    } else if (code === 'over' || code === 'cancelled') {
      this.showProblem(`lesson.error.${code}`, false);
    } else if (code === 'link_revoked') {
      this.showProblem('lesson.link.invalid', false);
    } else if (status === 409) {
      // Not open yet: a classroom screen left on before class joins by itself.
      this.showProblem(code === 'not_open_yet' ? 'lesson.error.not_open_yet' : 'lesson.error.not_open', true);
    } else if (status === 403) {
      // A student's link answers 403 when it was revoked or they were unenrolled.
      this.showProblem(this.secret !== null ? 'lesson.link.invalid' : 'lesson.error.not_invited', false);
    } else if (status === 404) {
      this.showProblem(this.secret !== null ? 'lesson.link.invalid' : 'lesson.error.not_found', false);
    } else if (status === 401) {
      this.showProblem('error.unauthorized', false);
    } else if (live) {
      this.rejoin(); // backs off by itself
    } else {
      // The network or the server: keep trying, backing off.
      this.rejoinDelay = Math.min(REJOIN_MAX_MS, Math.max(2000, this.rejoinDelay * 2));
      this.sayText('error', errorText(e));
      this.retryLater(this.rejoinDelay);
    }
  }

  // One pending automatic retry of the join at a time.
  retryLater(ms) {
    clearTimeout(this.retryTimer);
    this.retryTimer = this.later(() => this.tryJoin(), ms);
  }

  showProblem(key, retry) {
    this.setPhase('waiting');
    this.status.replaceChildren();
    const again = retry ? tx('button', 'lesson.try_again', null, { id: 'try-again', onclick: () => this.tryJoin() }) : null;
    this.body.replaceChildren(h('div.card.lesson-problem', {}, notice(retry ? 'ok' : 'error', key),
      retry ? tx('p.muted', 'lesson.retrying') : null, again));
    if (retry) {
      this.retryLater(30000);
      again.focus();
    }
  }

  // Takes a join response: the lesson, its state and a token; builds the role's view once.
  enter(resp) {
    if (!resp || !ROLES.includes(resp.role)) {
      this.showProblem('error.internal', true);
      return;
    }
    this.join = resp;
    this.role = resp.role;
    this.lessonId = (resp.lesson && resp.lesson.id) || this.lessonId;
    this.sites = new Map((resp.sites || []).map((s) => [s.id, s]));
    this.mySite = resp.attendee && resp.attendee.kind === 'classroom' ? resp.attendee.id : null;
    this.root.dataset.role = resp.role;
    this.mergeDecks(resp.decks || []);
    this.applyState(resp.state, true);
    const lesson = resp.lesson || {};
    const starts = toMs(lesson.starts_at);
    this.titleSlot.replaceChildren(h('span.lesson-name', {}, raw(lesson.title || '')),
      starts !== null ? h('span.lesson-time.muted', {}, timeEl(starts), '–', timeEl(starts + Number(lesson.duration_min || 0) * 60000)) : null);
    if (!this.view) {
      const View = { teacher: TeacherView, classroom: TerminalView, student: WatchView, observer: WatchView }[this.role];
      this.view = new View(this);
      this.body.replaceChildren(this.view.el);
      this.view.attached();
    } else if (!this.view.el.isConnected) {
      this.body.replaceChildren(this.view.el);
    }
    this.setPhase('live');
    this.conn.el.hidden = false;
    this.status.replaceChildren();
    this.view.renderState();
    this.scheduleTokenRefresh();
    this.connect();
  }

  get publishes() {
    return this.role === 'teacher' || this.role === 'classroom';
  }

  // Closes the room connection, keeping what it counted and our mute state for the next one.
  dropClient() {
    const c = this.client;
    if (!c) return;
    this.usedBefore += c.dataUsed;
    this.muted = { ...c.local.muted };
    c.close();
    this.client = null;
  }

  get dataUsed() {
    return this.usedBefore + (this.client ? this.client.dataUsed : 0);
  }

  async connect() {
    this.dropClient();
    this.channelSynced = false;
    const c = new RoomClient(this.join.room, this.join.token);
    if (this.muted) c.local.muted = { ...this.muted };
    this.client = c;
    c.on('state', (s) => this.onClientState(c, s))
      .on('participant', () => this.renderMedia())
      .on('left', () => this.renderMedia())
      .on('tracks', () => this.renderMedia())
      .on('quality', ({ identity, quality }) => this.onQuality(identity, quality))
      .on('chat', ({ from, text }) => this.chat && this.chat.add(from, text, false))
      .on('data', (msg) => this.onData(msg))
      .on('change', () => this.onChange())
      .on('usage', () => this.view && this.view.onUsage && this.view.onUsage(this.dataUsed))
      .on('reception', (audioOnly) => this.view && this.view.onReception && this.view.onReception(audioOnly))
      .on('error', ({ code }) => {
        if (code === 'publish_failed') this.say('error', 'room.publish_failed');
      });
    this.conn.set(this.joinedOnce ? 'reconnecting' : 'connecting');
    // Students never publish, so their phones are never asked for a camera or microphone.
    if (this.publishes) {
      await c.acquire();
      if (this.client !== c || this.destroyed) return;
      if (this.role === 'classroom') c.cameraEncoding = this.cameraEncodingFor(c);
      if (!c.local.stream || !c.local.stream.getVideoTracks().length) this.say('error', 'room.no_devices');
      this.view.showSelf(c.local.stream);
    }
    c.join();
  }

  // A classroom's camera: small and slow (≤ 60 kbit/s, 5 fps, short side ≈ 180 px) while only
  // the teacher sees it; full size when the classroom is on stage.
  cameraEncodingFor(c) {
    if (this.state && this.state.stage === this.mySite) return { maxBitrate: 500000, maxFramerate: 15, scaleResolutionDownBy: 1 };
    const track = c.local.stream && c.local.stream.getVideoTracks()[0];
    const settings = track ? track.getSettings() : {};
    const short = Math.min(settings.width || 640, settings.height || 360);
    return { maxBitrate: 60000, maxFramerate: 5, scaleResolutionDownBy: Math.max(1, short / 180) };
  }

  onClientState(c, { state, reason, code }) {
    if (c !== this.client || this.ended || this.destroyed) return;
    switch (state) {
      case 'joining':
        this.channelSynced = false;
        this.conn.set(this.joinedOnce ? 'reconnecting' : 'connecting');
        break;
      case 'joined':
        this.conn.set(ratingState(this.ownRating));
        this.status.replaceChildren();
        this.joinedOnce = true;
        this.rejoinDelay = 0;
        this.renderMedia();
        this.onChange();
        break;
      case 'reconnecting':
        this.channelSynced = false;
        this.conn.set(navigator.onLine === false ? 'offline' : 'reconnecting');
        break;
      case 'removed':
        if (reason === 'room_closed') this.showEnded();
        else if (reason === 'replaced') this.showReplaced();
        else if (reason === 'kicked') this.showStopped('room.removed.kicked');
        else this.rejoin();
        break;
      case 'failed':
        if (code === 'room_closed') this.showEnded();
        else if (code === 'unsupported_protocol') this.showStopped('room.error.unsupported_protocol');
        else this.rejoin();
        break;
      case 'disconnected':
        this.rejoin();
        break;
      default:
        break;
    }
  }

  // The connection is gone for good (a long drop, an expired token): ask for a fresh join —
  // new token, current state — and connect again, backing off (0 s, 2 s, 4 s … 30 s) until a
  // connection is up again, so a classroom screen recovers without anyone at it.
  rejoin() {
    if (this.ended || this.destroyed || this.rejoinPending) return;
    this.dropClient();
    this.conn.set(navigator.onLine === false ? 'offline' : 'reconnecting');
    this.say('error', 'room.reconnecting');
    const delay = this.rejoinDelay;
    this.rejoinDelay = Math.min(REJOIN_MAX_MS, Math.max(2000, delay * 2));
    this.rejoinPending = true;
    this.later(async () => {
      let resp;
      try {
        resp = await this.fetchJoin();
      } catch (e) {
        this.rejoinPending = false;
        if (!this.destroyed) this.joinFailed(e, true);
        return;
      }
      this.rejoinPending = false;
      if (!this.destroyed && !this.ended) this.enter(resp);
    }, delay);
  }

  // Renews the join token before it expires, so a reconnect late in a long lesson still works.
  scheduleTokenRefresh() {
    clearTimeout(this.refreshTimer);
    let wait = tokenLifetimeMs(this.join.token);
    if (wait === null) {
      const exp = toMs(this.join.expires_at);
      if (exp === null) return;
      wait = exp - Date.now();
    }
    wait = Math.min(Math.max(30000, wait - 120000), 2 ** 31 - 1);
    this.refreshTimer = this.later(() => this.refreshToken(), wait);
  }

  async refreshToken() {
    if (this.ended) return;
    try {
      const resp = await this.fetchJoin();
      if (!resp || resp.room !== this.join.room) return;
      this.join = resp;
      if (this.client) this.client.setToken(resp.token);
      this.mergeDecks(resp.decks || []);
      this.applyState(resp.state, true);
      this.scheduleTokenRefresh();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 409) this.later(() => this.refreshToken(), 30000);
    }
  }

  // Fetches the state again. A student's link asks for its course's open lesson, by the secret
  // in the body like its join, but without joining again (which would log another attempt).
  async resync() {
    try {
      const res = this.secret !== null
        ? await api('POST', '/lesson-links/state', { secret: this.secret })
        : await api('GET', `/lessons/${enc(this.lessonId)}/state`);
      // The course's open lesson may be another one by now; its state is not ours.
      if (res.lesson_id && res.lesson_id !== this.lessonId) return;
      this.mergeDecks(res.decks || []);
      this.applyState(res.state, true);
    } catch (e) {
      console.warn('lesson state not fetched; joining again for it', e);
      await this.refreshToken();
    }
  }

  // ---- the shared state ------------------------------------------------------------------

  // Applies a state unless it is older than the one shown (`orEqual`: an equal version is
  // applied too, as after a join).
  applyState(state, orEqual) {
    if (!state || typeof state !== 'object' || !Number.isFinite(state.version)) return;
    if (this.state && (orEqual ? state.version < this.state.version : state.version <= this.state.version)) return;
    const wasStaged = this.state && this.state.stage === this.mySite;
    this.state = { stage: null, hands: [], chat_locked: false, deck_id: null, page: 0, ...state };
    if (!Array.isArray(this.state.hands)) this.state.hands = [];
    if (this.role === 'classroom' && this.client && wasStaged !== (this.state.stage === this.mySite)) {
      this.client.setCameraEncoding(this.cameraEncodingFor(this.client));
    }
    this.prefetchAround();
    if (this.view) {
      this.view.renderState();
      this.renderMedia();
      this.onChange();
    }
  }

  mergeDecks(decks) {
    for (const d of decks) {
      if (!d || !d.id || !Array.isArray(d.pages)) continue;
      const i = this.decks.findIndex((x) => x.id === d.id);
      if (i >= 0) this.decks[i] = d; else this.decks.push(d);
      // A classroom screen loads every page at once, so a page turn needs nothing from its link.
      if (this.role === 'classroom') this.prefetch.add(d.pages);
    }
    if (this.view) this.view.renderState();
  }

  deck(id) {
    return this.decks.find((d) => d.id === id) || null;
  }

  // Phones (metered data) load only the next page ahead; the classroom screen has them all.
  prefetchAround() {
    if (!this.state || this.role === 'classroom' || this.role === 'teacher') return;
    const d = this.deck(this.state.deck_id);
    if (d) this.prefetch.add([d.pages[this.state.page + 1]]);
  }

  onData(msg) {
    if (!msg || this.ended) return;
    if (msg.type === 'lesson_state') this.applyState(msg.state, false);
    else if (msg.type === 'deck_added' && msg.deck) this.mergeDecks([msg.deck]);
    else if (msg.type === 'lesson_ended') this.showEnded();
  }

  // A teacher's or a terminal's control call; the answer is the new state.
  async control(method, path, body) {
    try {
      const res = await api(method, `/lessons/${enc(this.lessonId)}${path}`, body);
      const state = res && (res.state || res);
      if (state && Number.isFinite(state.version)) this.applyState(state, false);
      return res;
    } catch (e) {
      this.sayText('error', errorText(e));
      throw e;
    }
  }

  // ---- media -----------------------------------------------------------------------------

  participant(identity) {
    return (this.client && this.client.participants.get(identity)) || null;
  }

  teacherIdentity() {
    if (!this.client) return null;
    for (const p of this.client.participants.values()) if (p.identity.startsWith('teacher:')) return p.identity;
    return null;
  }

  // The live track of a participant's source, or null (absent, muted or not received).
  track(identity, source) {
    const p = this.participant(identity);
    const x = p && p.tracks.find((tr0) => tr0.source === source && !tr0.muted);
    return x ? this.client.remoteTrack(x) : null;
  }

  siteName(siteId) {
    const site = this.sites.get(siteId);
    const p = this.participant(`classroom:${siteId}`);
    return (site && site.name) || (p && p.name) || siteId;
  }

  nameOf(identity) {
    if (identity && this.client && identity === this.client.identity) return (this.client.me && this.client.me.name) || identity;
    const p = this.participant(identity);
    if (p && p.name) return p.name;
    if (identity && identity.startsWith('classroom:')) return this.siteName(identity.slice('classroom:'.length));
    return identity || '';
  }

  renderMedia() {
    if (!this.view || !this.client) return;
    this.view.renderMedia();
    // Sound: whoever the view wants heard, each through its own <audio>.
    const want = new Set();
    for (const identity of this.client.participants.keys()) if (this.view.hears(identity)) want.add(identity);
    for (const [identity, el] of this.audio) {
      if (!want.has(identity)) {
        setMedia(el, null);
        el.remove();
        this.audio.delete(identity);
      }
    }
    for (const identity of want) {
      let el = this.audio.get(identity);
      if (!el) {
        el = h('audio', { autoplay: true, 'data-identity': identity });
        this.audio.set(identity, el);
        this.audioBox.append(el);
      }
      setMedia(el, this.track(identity, 'microphone'), (blocked) => {
        this.audioBlocked.add(blocked);
        this.audioButton.hidden = false;
      });
    }
  }

  unblockAudio() {
    for (const el of this.audioBlocked) el.play().catch(() => {});
    this.audioBlocked.clear();
    this.audioButton.hidden = true;
  }

  onQuality(identity, quality) {
    if (this.client && identity === this.client.identity) {
      this.ownRating = quality && quality.rating;
      if (this.client.state === 'joined') this.conn.set(ratingState(this.ownRating));
      return;
    }
    if (this.view && this.view.onQuality) this.view.onQuality(identity, quality);
  }

  // ---- chat ------------------------------------------------------------------------------

  makeChat(readOnly) {
    this.chat = new ChatPanel({
      readOnly,
      nameOf: (identity) => this.nameOf(identity),
      send: (text) => {
        if (!this.client || !this.client.sendChat(text)) {
          this.say('error', 'room.chat.unavailable');
          return false;
        }
        this.chat.add(this.client.identity, text, true);
        return true;
      },
    });
    return this.chat;
  }

  onChange() {
    const c = this.client;
    // The media server drops data sent to us before our data channel is open, so a page turn
    // made while we were joining (or rejoining) would be lost: fetch the state once it opens.
    if (c && c.channel === 'open' && !this.channelSynced) {
      this.channelSynced = true;
      this.resync();
    }
    if (this.chat && this.state) {
      const allowed = !!(c && c.me && c.me.permissions.publish_data);
      const locked = this.state.chat_locked && this.role !== 'teacher';
      this.chat.setAvailable(allowed && !locked && c.channel === 'open', locked);
    }
    if (this.view && this.view.onChange) this.view.onChange();
  }

  // ---- the end ---------------------------------------------------------------------------

  showEnded() {
    if (this.ended) return;
    this.ended = true;
    if (this.client) this.client.leave();
    this.prefetch.stop();
    if (this.view) this.view.destroy();
    for (const el of this.audio.values()) setMedia(el, null);
    this.conn.set('ended');
    this.setPhase('ended');
    this.status.replaceChildren();
    const extra = [];
    if (this.role === 'teacher') {
      extra.push(h('p', {}, tx('a', 'lesson.attendance.open', null, { href: `/lesson/${enc(this.lessonId)}/attendance`, 'data-nav': true, id: 'attendance-link' })));
    }
    if (this.secret !== null) {
      extra.push(tx('button', 'lesson.link.back', null, { id: 'back-to-course', onclick: () => this.restartLink() }));
    } else {
      extra.push(h('p', {}, tx('a', 'nav.home', null, { href: '/', 'data-nav': true, id: 'back-home' })));
    }
    this.body.replaceChildren(h('div.card.lesson-ended', { id: 'lesson-ended' }, notice('ok', 'lesson.ended'), extra));
    const first = this.body.querySelector('a, button');
    if (first && this.role === 'classroom') first.focus();
  }

  showStopped(key) {
    this.dropClient();
    this.conn.set('offline');
    this.setPhase('stopped');
    this.status.replaceChildren(notice('error', key));
  }

  // The same attendee opened the lesson elsewhere (another tab or device).
  showReplaced() {
    this.showStopped('lesson.replaced');
    this.status.append(tx('button', 'lesson.take_over', null, { id: 'take-over', onclick: () => this.rejoin() }));
  }

  // ---- a student's link ------------------------------------------------------------------

  async openLink() {
    this.setPhase('loading');
    let info;
    try {
      info = this.secret ? await api('POST', '/lesson-links/lookup', { secret: this.secret }) : null;
    } catch (e) {
      if (this.destroyed) return;
      if (e instanceof ApiError && [403, 404, 422].includes(e.status)) this.showProblem('lesson.link.invalid', false);
      else {
        this.sayText('error', errorText(e));
        this.later(() => this.openLink(), LINK_POLL_MS);
      }
      return;
    }
    if (this.destroyed) return;
    if (!info) {
      this.showProblem('lesson.link.invalid', false); // /l with nothing after it
      return;
    }
    const now = Date.now();
    const lessons = Array.isArray(info.lessons) ? info.lessons : [];
    this.renderLobby(info, lessons, now);
    if (lessons.some((l) => isOpen(l, now))) {
      try {
        const resp = await this.fetchJoin();
        if (!this.destroyed) this.enter(resp);
        return;
      } catch (e) {
        if (this.destroyed) return;
        if (!(e instanceof ApiError) || e.status !== 409) this.sayText('error', errorText(e));
      }
    }
    // Check again in a minute, or right when the next lesson opens.
    const next = lessons.map((l) => toMs(l.window && l.window.opens_at)).filter((ms) => ms !== null && ms > now).sort((a, b) => a - b)[0];
    this.later(() => this.openLink(), Math.min(LINK_POLL_MS, next ? Math.max(1000, next - now + 2000) : LINK_POLL_MS));
  }

  restartLink() {
    this.ended = false;
    this.view = null;
    this.chat = null;
    this.state = null;
    this.joinedOnce = false;
    this.conn.el.hidden = true;
    this.openLink();
  }

  renderLobby(info, lessons, now) {
    this.setPhase('lobby');
    this.titleSlot.replaceChildren(h('span.lesson-name', {}, raw((info.course && info.course.title) || '')));
    const items = lessons.map((l) => {
      const key = phaseKey(l, now);
      return h('li.lesson-item', { 'data-lesson': l.id, 'data-phase': key.split('.').pop() },
        h('div.lesson-item-title', {}, raw(l.title || '')),
        h('div.muted', {}, timeEl(l.starts_at, 'date'), ' · ', tx('span', 'lesson.minutes', { n: Number(l.duration_min || 0) })),
        tx('span.pill', key));
    });
    this.body.replaceChildren(h('div.card.lesson-lobby', {},
      h('p.who', {}, tx('span', 'lesson.link.hello'), ' ', h('strong', {}, raw((info.student && info.student.name) || ''))),
      h('h1', {}, raw((info.course && info.course.title) || '')),
      items.length ? h('ol.lesson-list', { id: 'lesson-list' }, items) : tx('p.muted', 'lesson.link.no_lessons'),
      tx('p.muted', 'lesson.link.auto')));
  }
}

// ---- entry -------------------------------------------------------------------------------

let current = null;

// Shows the lesson page of the current address (/lesson/{id}, /l#{secret}, or an old
// /l/{secret}). Rendering the same page again keeps the running session; `me` is the logged-in
// account, if any.
export function showLesson(container, me) {
  linkToFragment();
  const key = pageKey();
  if (current && current.path === key) {
    if (current.root.parentElement !== container) container.replaceChildren(current.root);
    return;
  }
  if (current) current.destroy();
  current = new LessonSession(key, me);
  container.replaceChildren(current.root);
  current.start();
}

// Leaving the page by the browser's back button ends the session (camera off, room left).
window.addEventListener('popstate', () => {
  if (current && pageKey() !== current.path) {
    current.destroy();
    current = null;
  }
});
