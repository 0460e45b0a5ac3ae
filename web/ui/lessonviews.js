// The views of a live lesson, one per role, drawn from a `LessonSession` (lesson.js):
//   TeacherView   the teacher's console: classroom tiles, the stage, raised hands, slides, chat
//   TerminalView  a remote classroom's big screen, driven with a TV remote
//   WatchView     a student's phone, or a hidden observer
// and, after the lesson, the attendance report (showAttendance). Each live view has: `el`, attached(), renderState(), renderMedia(), hears(identity),
// showSelf(stream), destroy(), and optionally onQuality/onChange/onUsage.

import { api } from './api.js';
import { h, raw, errorText } from './app.js';
import { t } from './i18n.js';
import { tr, trAttr, tx, notice, setMedia, videoBox, slideView, slideUrl, focusRing, timeEl, linkControls, showDataUsed } from './lessonparts.js';

const enc = encodeURIComponent;
const RATINGS = ['good', 'fair', 'poor', 'lost'];

// Replaces the children of `el` with `render()` only when `value` changed since last time.
function relabel(el, value, render) {
  if (el.dataset.value === value) return;
  el.dataset.value = value;
  el.replaceChildren(...render());
}

// Empties an element translated with tr(), so a language switch does not fill it again.
function clearText(el) {
  delete el.dataset.t;
  delete el.dataset.tv;
  el.replaceChildren();
}

function setQuality(el, q) {
  if (!q || !RATINGS.includes(q.rating)) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.dataset.quality = q.rating;
  tr(el, `room.quality.${q.rating}`);
}

// Our own camera in a video box (mirrored by CSS, as people expect of themselves).
function showOwnCamera(box, client) {
  const s = client && client.local.stream;
  const cam = s && s.getVideoTracks()[0];
  box.show(cam && !client.local.muted.camera ? cam : null);
}

// Mute buttons for our own microphone and camera, as on the room page.
function updateMuteButtons(client, micButton, camButton) {
  const local = client ? client.local : { stream: null, muted: {} };
  const has = (kind) => !!(local.stream && local.stream.getTracks().some((x) => x.kind === kind));
  const set = (button, source, kind, onKey, offKey) => {
    const muted = !!local.muted[source];
    tr(button, muted ? offKey : onKey);
    button.setAttribute('aria-pressed', String(muted));
    button.hidden = !has(kind);
  };
  set(micButton, 'microphone', 'audio', 'room.mute_mic', 'room.unmute_mic');
  set(camButton, 'camera', 'video', 'room.camera_off_action', 'room.camera_on_action');
}

// ---- the teacher's console ---------------------------------------------------------------

export class TeacherView {
  constructor(s) {
    this.s = s;
    this.tiles = new Map(); // site id -> tile
    this.listening = new Set(); // off-stage classrooms the teacher chose to hear
    this.viewDeckId = null; // the deck whose thumbnails are shown
    this.pendingPage = null;

    this.self = videoBox('div.self-view', { id: 'self-video' }, 'room.camera_off');
    this.micButton = h('button.secondary', { id: 'mute-mic', onclick: () => s.client && s.client.toggleMute('microphone') });
    this.camButton = h('button.secondary', { id: 'mute-camera', onclick: () => s.client && s.client.toggleMute('camera') });
    this.muteAll = tx('button.secondary', 'lesson.mute_all', null, { id: 'mute-all', onclick: () => this.doMuteAll() });
    this.endButton = tx('button.danger', 'lesson.end', null, { id: 'end-lesson', onclick: () => this.askEnd(true) });
    this.endConfirm = h('div.end-confirm', { id: 'end-confirm', role: 'alertdialog', hidden: true },
      tx('p', 'lesson.end_confirm'),
      h('div.row', {},
        tx('button.danger', 'lesson.end_yes', null, { id: 'end-lesson-confirm', onclick: () => this.endLesson() }),
        tx('button.secondary', 'lesson.end_no', null, { id: 'end-lesson-cancel', onclick: () => this.askEnd(false) })));
    const attendance = tx('a', 'lesson.attendance.open', null, {
      id: 'attendance-link', href: `/lesson/${enc(s.lessonId)}/attendance`, target: '_blank', rel: 'noopener',
    });

    this.grid = h('div.site-grid', { id: 'site-grid' });
    for (const id of s.sites.keys()) this.tileFor(id);

    this.stage = videoBox('div.stage-box', { id: 'stage-video' }, 'lesson.stage.empty');
    this.unstage = tx('button.secondary', 'lesson.stage.remove', null, { id: 'unstage', hidden: true, onclick: () => this.setStage(null) });

    this.slide = slideView();
    this.prev = tx('button.secondary', 'lesson.slides.prev', null, { id: 'prev-page', onclick: () => this.turn(-1) });
    this.next = tx('button', 'lesson.slides.next', null, { id: 'next-page', onclick: () => this.turn(1) });
    this.deckSelect = h('select', { id: 'deck-select', onchange: () => { this.viewDeckId = this.deckSelect.value; this.renderState(); } });
    trAttr(this.deckSelect, 'aria-label', 'lesson.slides.deck');
    this.thumbs = h('div.thumbs', { id: 'thumbs' });
    this.file = h('input', { type: 'file', id: 'deck-file', accept: 'application/pdf,image/png,image/jpeg,.pdf,.png,.jpg,.jpeg', onchange: () => this.upload() });
    this.uploadStatus = h('div.upload-status', { 'aria-live': 'polite' });

    this.hands = h('ol.hand-queue', { id: 'hand-queue' });
    this.noHands = tx('p.muted', 'lesson.hands.none');

    const chat = s.makeChat(false);
    this.lockButton = h('button.secondary', { id: 'chat-lock', onclick: () => this.toggleLock() });
    chat.tools.append(this.lockButton);

    const controls = h('div.controls', { role: 'toolbar' }, this.micButton, this.camButton, this.muteAll, s.audioButton, this.endButton);
    trAttr(controls, 'aria-label', 'room.controls');
    this.el = h('div.teacher-console', {},
      h('div.tc-main', {},
        h('section.tc-sites', {}, tx('h2', 'lesson.sites.title'), this.grid),
        h('div.tc-center', {},
          h('section.tc-stage', { id: 'stage-area' }, h('div.tc-head', {}, tx('h2', 'lesson.stage.title'), this.unstage), this.stage.el),
          h('section.tc-slides', {},
            h('div.tc-head', {}, tx('h2', 'lesson.slides.title'), this.deckSelect),
            this.slide.el,
            h('div.slide-nav', {}, this.prev, this.next),
            this.thumbs,
            h('label.upload', {}, tx('span', 'lesson.slides.upload'), this.file),
            this.uploadStatus))),
      h('aside.tc-side', {},
        this.self.el, controls, this.endConfirm, h('p.small', {}, attendance),
        h('section.tc-hands', {}, tx('h2', 'lesson.hands.title'), this.hands, this.noHands),
        chat.el));

    // A presenter's clicker sends Page Down / Page Up.
    this.onKey = (ev) => {
      if (ev.target.closest && ev.target.closest('input, textarea, select')) return;
      if (ev.key === 'PageDown') { ev.preventDefault(); this.turn(1); }
      if (ev.key === 'PageUp') { ev.preventDefault(); this.turn(-1); }
    };
    document.addEventListener('keydown', this.onKey);
  }

  attached() {}

  destroy() {
    document.removeEventListener('keydown', this.onKey);
    for (const tile of this.tiles.values()) setMedia(tile.video, null);
    setMedia(this.stage.video, null);
    setMedia(this.self.video, null);
  }

  tileFor(id) {
    let tile = this.tiles.get(id);
    if (tile) return tile;
    const video = h('video', { autoplay: true, playsinline: true });
    video.muted = true;
    const offline = tx('div.video-empty', 'lesson.site.offline');
    const badge = tx('span.hand-badge', 'lesson.hands.badge', null, { hidden: true });
    const quality = h('span.quality', { hidden: true });
    const name = h('span.name');
    const stageButton = h('button.small', { 'data-stage': id, onclick: () => this.setStage(this.s.state && this.s.state.stage === id ? null : id) });
    const listenButton = h('button.secondary.small', { 'data-listen': id, 'aria-pressed': 'false', onclick: () => this.toggleListen(id) });
    tr(listenButton, 'lesson.site.listen');
    const el = h('div.site-tile', { 'data-site': id, 'data-online': 'false', 'data-hand': 'false', 'data-staged': 'false' },
      h('div.media', {}, video, offline, badge),
      h('div.tile-bar', {}, name, h('span.spacer'), quality),
      h('div.tile-actions', {}, stageButton, listenButton));
    tile = { el, video, offline, badge, quality, name, stageButton, listenButton };
    this.tiles.set(id, tile);
    this.grid.append(el);
    return tile;
  }

  renderState() {
    const s = this.s;
    const st = s.state;
    if (!st) return;
    for (const id of [...st.hands, st.stage].filter(Boolean)) this.tileFor(id);
    for (const [id, tile] of this.tiles) {
      const hand = st.hands.includes(id);
      const staged = st.stage === id;
      tile.el.dataset.hand = String(hand);
      tile.el.dataset.staged = String(staged);
      tile.badge.hidden = !hand;
      tr(tile.stageButton, staged ? 'lesson.stage.remove' : 'lesson.stage.bring');
      tile.stageButton.setAttribute('aria-pressed', String(staged));
      const name = s.siteName(id);
      relabel(tile.name, name, () => [raw(name)]);
    }
    this.unstage.hidden = !st.stage;
    if (st.stage) {
      const name = s.siteName(st.stage);
      relabel(this.stage.caption, `on:${name}`, () => [raw(name)]);
    } else {
      relabel(this.stage.caption, '', () => []);
    }
    this.hands.replaceChildren(...st.hands.map((id, i) => h('li', { 'data-site': id },
      h('span.hand-pos', { text: String(i + 1) }),
      h('span.hand-name', {}, raw(s.siteName(id))),
      st.stage === id
        ? tx('span.pill', 'lesson.stage.on')
        : tx('button.small', 'lesson.stage.bring', null, { 'data-hand-stage': id, onclick: () => this.setStage(id) }),
      tx('button.secondary.small', 'lesson.hands.lower', null, { 'data-lower': id, onclick: () => this.lower(id) }))));
    this.noHands.hidden = st.hands.length > 0;
    this.renderSlides();
    tr(this.lockButton, st.chat_locked ? 'lesson.chat.unlock' : 'lesson.chat.lock');
    this.lockButton.setAttribute('aria-pressed', String(!!st.chat_locked));
  }

  renderSlides() {
    const s = this.s;
    const st = s.state;
    const shown = s.deck(st.deck_id);
    const view = s.deck(this.viewDeckId) || shown || s.decks[s.decks.length - 1] || null;
    this.viewDeckId = view ? view.id : null;
    this.slide.show(shown, st.page);
    this.deckSelect.hidden = s.decks.length < 2;
    const deckKey = s.decks.map((d) => d.id).join(',');
    if (this.deckSelect.dataset.decks !== deckKey) {
      this.deckSelect.dataset.decks = deckKey;
      this.deckSelect.replaceChildren(...s.decks.map((d) => h('option', { value: d.id }, raw(d.title || d.id))));
    }
    if (view) this.deckSelect.value = view.id;
    const thumbKey = view ? `${view.id}:${view.pages.length}` : '';
    if (this.thumbs.dataset.deck !== thumbKey) {
      this.thumbs.dataset.deck = thumbKey;
      this.thumbs.replaceChildren(...(view ? view.pages : []).map((p, i) => {
        const img = h('img', { src: slideUrl(p), loading: 'lazy', alt: '' });
        const b = h('button.thumb', { 'data-thumb': String(i), onclick: () => this.goto(view.id, i) }, img, h('span', { text: String(i + 1) }));
        trAttr(b, 'aria-label', 'lesson.slides.page_of', { n: i + 1, total: view.pages.length });
        return b;
      }));
    }
    for (const b of this.thumbs.children) {
      const current = shown && view && shown.id === view.id && Number(b.dataset.thumb) === st.page;
      if (current) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
    }
    this.prev.disabled = !shown || st.page <= 0;
    this.next.disabled = shown ? st.page >= shown.pages.length - 1 : !view;
  }

  renderMedia() {
    const s = this.s;
    if (!s.client) return;
    for (const identity of s.client.participants.keys()) {
      if (identity.startsWith('classroom:')) this.tileFor(identity.slice('classroom:'.length));
    }
    for (const [id, tile] of this.tiles) {
      const identity = `classroom:${id}`;
      const online = !!s.participant(identity);
      const cam = s.track(identity, 'camera');
      tile.el.dataset.online = String(online);
      if (!online) tile.quality.hidden = true;
      setMedia(tile.video, cam);
      tile.offline.hidden = !!cam;
      tr(tile.offline, online ? 'room.camera_off' : 'lesson.site.offline');
      tile.listenButton.setAttribute('aria-pressed', String(this.listening.has(id)));
      tile.listenButton.hidden = !online || (s.state && s.state.stage === id);
    }
    const st = s.state;
    this.stage.show(st && st.stage ? s.track(`classroom:${st.stage}`, 'camera') : null);
  }

  // The teacher hears the classroom on stage, and any other one they chose to listen to.
  hears(identity) {
    if (!identity.startsWith('classroom:')) return false;
    const id = identity.slice('classroom:'.length);
    return (this.s.state && this.s.state.stage === id) || this.listening.has(id);
  }

  showSelf() {
    this.onChange();
  }

  onChange() {
    const c = this.s.client;
    updateMuteButtons(c, this.micButton, this.camButton);
    showOwnCamera(this.self, c);
  }

  onQuality(identity, quality) {
    if (!identity.startsWith('classroom:')) return;
    setQuality(this.tileFor(identity.slice('classroom:'.length)).quality, quality);
  }

  // ---- the teacher's controls ----

  toggleListen(id) {
    if (this.listening.has(id)) this.listening.delete(id); else this.listening.add(id);
    this.s.renderMedia();
  }

  setStage(siteId) {
    this.s.control('PUT', '/stage', { site_id: siteId }).catch(() => {});
  }

  lower(siteId) {
    this.s.control('DELETE', `/hands/${enc(siteId)}`).catch(() => {});
  }

  toggleLock() {
    this.s.control('PUT', '/chat-lock', { locked: !this.s.state.chat_locked }).catch(() => {});
  }

  async doMuteAll() {
    try {
      const res = await this.s.control('POST', '/mute-all');
      this.s.say('ok', 'lesson.muted_n', { n: Number((res && res.muted) || 0) });
    } catch { /* said */ }
  }

  askEnd(open) {
    this.endConfirm.hidden = !open;
    this.endButton.hidden = open;
    (open ? this.endConfirm.querySelector('#end-lesson-cancel') : this.endButton).focus();
  }

  async endLesson() {
    try {
      await this.s.control('POST', '/end');
      this.s.showEnded();
    } catch { /* said */ }
  }

  // Next or previous page of the deck shown; with no deck shown yet, "next" shows the first
  // page of the deck in the thumbnails.
  turn(delta) {
    const st = this.s.state;
    if (!st) return;
    const base = this.pendingPage || { deck: st.deck_id, page: st.page };
    const shown = this.s.deck(base.deck);
    if (!shown) {
      if (delta > 0 && this.viewDeckId) this.goto(this.viewDeckId, 0);
      return;
    }
    const page = base.page + delta;
    if (page >= 0 && page < shown.pages.length) this.goto(shown.id, page);
  }

  async goto(deckId, page) {
    this.pendingPage = { deck: deckId, page };
    try {
      await this.s.control('PUT', '/page', { deck_id: deckId, page });
    } catch { /* said */ }
    if (this.pendingPage && this.pendingPage.deck === deckId && this.pendingPage.page === page) this.pendingPage = null;
  }

  async upload() {
    const f = this.file.files && this.file.files[0];
    if (!f) return;
    const type = f.type || (/\.pdf$/i.test(f.name) ? 'application/pdf' : /\.png$/i.test(f.name) ? 'image/png' : 'image/jpeg');
    this.uploadStatus.replaceChildren(notice('ok', 'lesson.slides.uploading'));
    this.file.disabled = true;
    try {
      const res = await fetch(`/api/v1/lessons/${enc(this.s.lessonId)}/decks?title=${enc(f.name)}`, {
        method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': type, Accept: 'application/json' }, body: f,
      });
      if (!res.ok) {
        const key = res.status === 413 ? 'lesson.slides.too_large'
          : [400, 415, 422].includes(res.status) ? 'lesson.slides.bad_file' : 'lesson.slides.upload_failed';
        this.uploadStatus.replaceChildren(notice('error', key));
        return;
      }
      const deck = await res.json();
      this.s.mergeDecks([deck]);
      this.viewDeckId = deck.id;
      this.uploadStatus.replaceChildren(notice('ok', 'lesson.slides.uploaded', { n: deck.pages.length }));
      // Nothing shown yet: show the new deck straight away.
      if (!this.s.state.deck_id && deck.pages.length) this.goto(deck.id, 0);
      else this.renderState();
    } catch {
      this.uploadStatus.replaceChildren(notice('error', 'lesson.slides.upload_failed'));
    } finally {
      this.file.disabled = false;
      this.file.value = '';
    }
  }
}

// ---- a remote classroom's big screen -----------------------------------------------------

const HEADCOUNT_KEY = (lessonId) => `tongxin.headcount.${lessonId}`;

export class TerminalView {
  constructor(s) {
    this.s = s;
    this.teacher = videoBox('div.term-teacher', { id: 'teacher-video' }, 'lesson.teacher.waiting');
    this.slide = slideView();
    this.stage = videoBox('div.term-stage', { id: 'stage-video' }, 'lesson.stage.empty');
    this.onStage = tx('div.on-stage-banner', 'lesson.stage.you', null, { id: 'on-stage', hidden: true });
    this.stage.el.append(this.onStage);
    this.hand = h('button.hand-button', { id: 'hand', 'aria-pressed': 'false', onclick: () => this.toggleHand() });
    this.handNote = h('p.hand-note', { id: 'hand-note', 'aria-live': 'polite' });
    const saved = localStorage.getItem(HEADCOUNT_KEY(s.lessonId));
    this.count = h('input', { id: 'headcount', type: 'number', min: 0, max: 500, step: 1, inputmode: 'numeric', value: saved || '' });
    const step = (d) => {
      this.count.value = String(Math.min(500, Math.max(0, (parseInt(this.count.value, 10) || 0) + d)));
    };
    const minus = h('button.secondary.step', { id: 'headcount-minus', onclick: () => step(-1), text: '−' });
    const plus = h('button.secondary.step', { id: 'headcount-plus', onclick: () => step(1), text: '+' });
    trAttr(minus, 'aria-label', 'lesson.headcount.less');
    trAttr(plus, 'aria-label', 'lesson.headcount.more');
    this.countSave = tx('button', 'common.save', null, { id: 'headcount-save', onclick: () => this.saveHeadcount() });
    this.countStatus = h('span.headcount-status', { 'aria-live': 'polite' });
    // Our own camera, small in a corner of the teacher's picture, so the assistant can frame the room.
    this.self = videoBox('div.term-self', { id: 'self-video' }, 'room.camera_off');
    this.teacher.el.append(this.self.el);
    const countLabel = h('label.headcount', { for: 'headcount' }, tx('span', 'lesson.headcount.label'));
    // A village link: its cap, and the notice while it carries audio only.
    this.link = linkControls(() => s.client);
    this.teacher.el.append(this.link.audioOnly);
    this.el = h('div.terminal', {},
      h('div.term-main', {},
        this.teacher.el,
        h('div.term-side', {}, this.slide.el, this.stage.el)),
      h('div.term-bar', {},
        h('div.term-hand', {}, this.hand, this.handNote),
        h('div.term-count', {}, countLabel, h('div.stepper', {}, minus, this.count, plus), this.countSave, this.countStatus),
        this.link.budget,
        s.audioButton));
  }

  onReception(audioOnly) {
    this.link.showReception(audioOnly);
  }

  attached() {
    this.stopRing = focusRing(this.s.root, () => this.hand);
    this.hand.focus();
  }

  destroy() {
    if (this.stopRing) this.stopRing();
    for (const box of [this.teacher, this.stage, this.self]) setMedia(box.video, null);
  }

  get raised() {
    return !!(this.s.state && this.s.state.hands.includes(this.s.mySite));
  }

  get staged() {
    return !!(this.s.state && this.s.state.stage && this.s.state.stage === this.s.mySite);
  }

  renderState() {
    const st = this.s.state;
    if (!st) return;
    const raised = this.raised;
    tr(this.hand, raised ? 'lesson.hand.lower' : 'lesson.hand.raise');
    this.hand.setAttribute('aria-pressed', String(raised));
    this.hand.dataset.raised = String(raised);
    const pos = st.hands.indexOf(this.s.mySite);
    if (pos >= 0) tr(this.handNote, 'lesson.hand.position', { n: pos + 1 });
    else clearText(this.handNote);
    this.el.dataset.staged = String(this.staged);
    this.onStage.hidden = !this.staged;
    this.stage.el.hidden = !st.stage;
    if (st.stage && !this.staged) {
      const name = this.s.siteName(st.stage);
      relabel(this.stage.caption, `on:${name}`, () => [raw(name)]);
    } else {
      relabel(this.stage.caption, '', () => []);
    }
    this.slide.show(this.s.deck(st.deck_id), st.page);
    this.renderMedia();
  }

  renderMedia() {
    const s = this.s;
    const teacher = s.teacherIdentity();
    this.teacher.show(teacher ? s.track(teacher, 'camera') : null);
    const name = teacher ? s.nameOf(teacher) : '';
    relabel(this.teacher.caption, name, () => (name ? [raw(name)] : []));
    const st = s.state;
    if (this.staged) showOwnCamera(this.stage, s.client);
    else this.stage.show(st && st.stage ? s.track(`classroom:${st.stage}`, 'camera') : null);
  }

  // The classroom hears the teacher and the classroom on stage (never itself).
  hears(identity) {
    const st = this.s.state;
    return identity === this.s.teacherIdentity() || !!(st && st.stage && identity === `classroom:${st.stage}`);
  }

  showSelf() {
    showOwnCamera(this.self, this.s.client);
    this.renderMedia();
  }

  onChange() {
    showOwnCamera(this.self, this.s.client);
  }

  async toggleHand() {
    this.hand.disabled = true;
    try {
      await this.s.control('PUT', '/hand', { raised: !this.raised });
    } catch { /* said */ }
    this.hand.disabled = false;
    this.hand.focus();
  }

  async saveHeadcount() {
    const n = Number(this.count.value);
    if (this.count.value === '' || !Number.isInteger(n) || n < 0 || n > 500) {
      this.countStatus.replaceChildren(notice('error', 'lesson.headcount.invalid'));
      return;
    }
    try {
      await this.s.control('PUT', '/headcount', { site_id: this.s.mySite, pupils: n });
      localStorage.setItem(HEADCOUNT_KEY(this.s.lessonId), String(n));
      this.countStatus.replaceChildren(notice('ok', 'lesson.headcount.saved', { n }));
    } catch { /* said */ }
  }
}

// ---- a student's phone, or a hidden observer ---------------------------------------------

export class WatchView {
  constructor(s) {
    this.s = s;
    const observer = s.role === 'observer';
    this.teacher = videoBox('div.watch-teacher', { id: 'teacher-video' }, 'lesson.teacher.waiting');
    this.slide = slideView();
    this.stage = videoBox('div.watch-stage', { id: 'stage-video' }, 'lesson.stage.empty');
    const chat = s.makeChat(observer);
    this.dataUsed = h('p.data-used.muted', { id: 'data-used' });
    showDataUsed(this.dataUsed, 0);
    // A phone on metered data: its cap, what the lesson cost so far, and the notice while the
    // link carries audio only.
    this.link = linkControls(() => s.client);
    this.el = h('div.watch', {},
      observer ? notice('ok', 'lesson.observer.hidden') : null,
      this.link.audioOnly,
      h('div.watch-media', {}, this.teacher.el, this.slide.el, this.stage.el),
      s.audioButton,
      chat.el,
      h('div.data-bar', {}, this.dataUsed, this.link.budget));
    if (observer) this.el.firstElementChild.id = 'observer-note';
  }

  attached() {}

  destroy() {
    for (const box of [this.teacher, this.stage]) setMedia(box.video, null);
  }

  renderState() {
    const st = this.s.state;
    if (!st) return;
    this.stage.el.hidden = !st.stage;
    const name = st.stage ? this.s.siteName(st.stage) : '';
    relabel(this.stage.caption, name, () => (name ? [raw(name)] : []));
    this.slide.show(this.s.deck(st.deck_id), st.page);
  }

  renderMedia() {
    const s = this.s;
    const teacher = s.teacherIdentity();
    this.teacher.show(teacher ? s.track(teacher, 'camera') : null);
    const name = teacher ? s.nameOf(teacher) : '';
    relabel(this.teacher.caption, name, () => (name ? [raw(name)] : []));
    const st = s.state;
    this.stage.show(st && st.stage ? s.track(`classroom:${st.stage}`, 'camera') : null);
  }

  hears(identity) {
    const st = this.s.state;
    return identity === this.s.teacherIdentity() || !!(st && st.stage && identity === `classroom:${st.stage}`);
  }

  showSelf() {}

  onUsage(bytes) {
    showDataUsed(this.dataUsed, bytes);
  }

  onReception(audioOnly) {
    this.link.showReception(audioOnly);
  }
}

// ---- the attendance report ---------------------------------------------------------------

const ATTENDEE_KINDS = ['teacher', 'classroom', 'student', 'observer'];
const STATUSES = ['present', 'late', 'left_early', 'network_dropped', 'absent'];

// The report of /lesson/{id}/attendance, drawn into `container` inside the shell.
export async function showAttendance(container, lessonId) {
  const csv = tx('a.button', 'lesson.attendance.csv', null, {
    id: 'attendance-csv', href: `/api/v1/lessons/${enc(lessonId)}/attendance.csv`, download: `attendance-${lessonId}.csv`,
  });
  const status = h('div');
  const tbody = h('tbody');
  container.replaceChildren(h('section.attendance', {},
    h('h1', { text: t('lesson.attendance.title') }),
    h('div.row', {}, csv, h('a', { href: `/lesson/${enc(lessonId)}`, 'data-nav': true, text: t('lesson.attendance.back') })),
    status,
    h('div.table-scroll', {}, h('table', { id: 'attendance' },
      h('thead', {}, h('tr', {}, ['attendee', 'name', 'status', 'first_joined', 'minutes', 'drops', 'worst_quality', 'pupils']
        .map((k) => h('th', { text: t(`lesson.att.${k}`) })))),
      tbody))));
  let report;
  try {
    report = await api('GET', `/lessons/${enc(lessonId)}/attendance`);
  } catch (e) {
    status.replaceChildren(h('p.msg.error', { role: 'alert', text: errorText(e) }));
    return;
  }
  const pupils = new Map((report.headcounts || []).map((x) => [x.site_id, x.pupils]));
  const records = report.records || [];
  tbody.replaceChildren(...records.map((r) => {
    const a = r.attendee || {};
    return h('tr', { 'data-attendee': `${a.kind}:${a.id}`, 'data-status': r.status },
      h('td', { text: ATTENDEE_KINDS.includes(a.kind) ? t(`roomrole.${a.kind}`) : '' }),
      h('td', {}, raw(r.name || a.id || '')),
      h('td', {}, STATUSES.includes(r.status) ? h('span.pill', { 'data-status': r.status, text: t(`lesson.status.${r.status}`) }) : raw(r.status || '')),
      h('td', {}, r.first_joined ? timeEl(r.first_joined) : '–'),
      h('td', { text: String(r.minutes_present ?? 0) }),
      h('td', { text: String(r.drops ?? 0) }),
      h('td', { text: RATINGS.includes(r.worst_quality) ? t(`room.quality.${r.worst_quality}`) : '–' }),
      h('td', { text: a.kind === 'classroom' && pupils.has(a.id) ? String(pupils.get(a.id)) : '–' }));
  }));
  if (!records.length) status.replaceChildren(h('p.muted', { text: t('lesson.attendance.empty') }));
}
