// The live room page, /room/{room}#token=<join token>: a pre-join check of camera and microphone,
// then the room — tiles, chat, controls, quality badges — drawn from the events of a
// `RoomClient` (roomclient.js), which holds the connection. The token stays in the URL fragment,
// so it never reaches a log.

import { h, raw, languageSelect } from './app.js';
import { setLocale, t } from './i18n.js';
import { RoomClient } from './roomclient.js';
import { linkControls, showDataUsed } from './lessonparts.js';

const RATINGS = ['good', 'fair', 'poor', 'lost'];
const ROOM_ROLES = ['teacher', 'classroom', 'student', 'observer', 'doctor', 'patient', 'village_doctor', 'guest'];
const REMOVED = ['kicked', 'replaced', 'room_closed', 'timeout'];
const ERRORS = ['bad_message', 'unsupported_protocol', 'unauthorized', 'not_joined', 'already_joined', 'not_allowed',
  'bad_sdp', 'unknown_track', 'room_full', 'too_many_rooms', 'room_closed', 'bad_data'];

const errorKey = (code) => (ERRORS.includes(code) ? `room.error.${code}` : 'error.internal');

// ---- text that follows a language switch -------------------------------------------------
// Each translated element remembers its key, so switching the language re-translates the page
// in place instead of rebuilding it (which would interrupt playing videos).

function tr(el, key, vars) {
  el.dataset.t = key;
  if (vars) el.dataset.tv = JSON.stringify(vars); else delete el.dataset.tv;
  el.textContent = t(key, vars || {});
  return el;
}

function trAttr(el, attr, key, vars) {
  const all = el.dataset.tattr ? JSON.parse(el.dataset.tattr) : {};
  all[attr] = [key, vars || {}];
  el.dataset.tattr = JSON.stringify(all);
  el.setAttribute(attr, t(key, vars || {}));
  return el;
}

function retranslate(root) {
  for (const el of root.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t, el.dataset.tv ? JSON.parse(el.dataset.tv) : {});
  for (const el of root.querySelectorAll('[data-tattr]')) {
    for (const [attr, [key, vars]] of Object.entries(JSON.parse(el.dataset.tattr))) el.setAttribute(attr, t(key, vars));
  }
}

// A translated element: tx('button', 'room.join', null, {id: 'join'}).
const tx = (spec, key, vars, attrs) => tr(h(spec, attrs), key, vars);
// Network paths by their protocol names, which are not translated.
const PATH_NAMES = { udp: 'UDP', tcp: 'TCP', turn: 'TURN' };

// A status or error line, announced to screen readers.
const notice = (kind, key, vars) => tx(`p.msg.${kind}`, key, vars, { role: kind === 'error' ? 'alert' : 'status' });

function bumpRenders() {
  const root = document.documentElement;
  root.dataset.renders = String(Number(root.dataset.renders || 0) + 1);
}

// ---- the join token ----------------------------------------------------------------------

// The grant inside a join token (a JWT), for display only: the server checks the signature.
function decodeGrant(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (part.length % 4)) % 4);
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
    if (!claims || typeof claims !== 'object') return null;
    const str = (v) => (typeof v === 'string' && v ? v : null);
    return {
      identity: str(claims.sub) || str(claims.identity),
      name: str(claims.name),
      room: str(claims.room),
      canPublish: claims.can_publish !== false,
    };
  } catch {
    return null;
  }
}

function tokenFromHash() {
  return new URLSearchParams(location.hash.slice(1)).get('token') || null;
}

function roomFromPath() {
  const seg = location.pathname.slice('/room/'.length).split('/')[0];
  try { return decodeURIComponent(seg); } catch { return seg; }
}

// ---- media elements and tiles ------------------------------------------------------------

// Shows `track` in a media element, only touching it when the track changes.
function setMedia(el, track, onBlocked) {
  if (el.tongxinTrack === track) return;
  el.tongxinTrack = track;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) {
    el.play().catch((e) => {
      if (e && e.name === 'NotAllowedError' && onBlocked) onBlocked(el);
    });
  }
}

function videoEl(attrs) {
  const v = h('video', { autoplay: true, playsinline: true, ...attrs });
  v.muted = true; // sound plays through the tile's <audio>, so the picture can always autoplay
  return v;
}

function levelMeter(spec, attrs) {
  return trAttr(h(spec, { min: 0, max: 1, value: 0, ...attrs }), 'aria-label', 'room.mic_level');
}

function setQuality(el, q) {
  if (!q || !RATINGS.includes(q.rating)) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.dataset.quality = q.rating;
  tr(el, `room.quality.${q.rating}`);
  trAttr(el, 'title', 'room.quality.detail', {
    loss: (Number(q.loss || 0) * 100).toFixed(1),
    rtt: q.rtt_ms === null || q.rtt_ms === undefined ? '–' : q.rtt_ms,
    kbps: q.bitrate_kbps ?? 0,
  });
}

function roleText(role) {
  return ROOM_ROLES.includes(role) ? tx('span.role', `roomrole.${role}`) : null;
}

// Replaces the children of `el` with `render()` only when `value` changed since last time.
function relabel(el, value, render) {
  if (el.dataset.value === value) return;
  el.dataset.value = value;
  el.replaceChildren(...render());
}

// The camera picture (or its "camera off" placeholder), the shared screen and the microphone
// indicator of a tile.
function showTileMedia(tile, { cam, camShown, screen, screenShown, micOff }) {
  setMedia(tile.camVideo, cam);
  setMedia(tile.screenVideo, screen);
  tile.camVideo.hidden = !camShown;
  tile.camOff.hidden = camShown;
  tile.screenVideo.hidden = !screenShown;
  tile.mic.dataset.muted = String(micOff);
  tr(tile.mic, micOff ? 'room.mic_off' : 'room.mic_on');
}

function makeTile(identity, local) {
  const camVideo = videoEl({ 'data-source': 'camera' });
  const screenVideo = videoEl({ 'data-source': 'screen', hidden: true });
  const audio = local ? null : h('audio', { autoplay: true, 'data-source': 'microphone' });
  const camOff = tx('div.camera-off', 'room.camera_off', null, { hidden: true });
  const name = h('span.name');
  const role = h('span.role-slot');
  const mic = h('span.mic', { 'data-role': 'mic-indicator', 'data-muted': 'false' });
  const quality = h('span.quality', { hidden: true });
  const el = h(`div.tile.${local ? 'local' : 'remote'}`, { 'data-identity': identity },
    h('div.media', {}, camVideo, camOff, screenVideo),
    h('div.tile-bar', {}, name, role, h('span.spacer'), mic, quality),
    audio);
  return { el, camVideo, screenVideo, audio, camOff, name, role, mic, quality };
}

function releaseTile(tile) {
  for (const el of [tile.camVideo, tile.screenVideo, tile.audio]) if (el) setMedia(el, null);
}

// ---- one room session --------------------------------------------------------------------

class RoomSession {
  constructor(room, token) {
    this.room = room;
    this.token = token;
    this.grant = token ? decodeGrant(token) : null;
    this.state = 'prejoin';
    this.tiles = new Map(); // identity -> tile elements
    this.chat = [];
    this.audioBlocked = new Set();
    this.client = new RoomClient(room, token, { simulcast: true })
      .on('state', (s) => this.onState(s))
      .on('participant', (p) => this.updateTile(p))
      .on('left', (identity) => this.removeTile(identity))
      .on('tracks', () => {
        for (const p of this.client.participants.values()) this.updateTile(p);
      })
      .on('speakers', (speaking) => this.showSpeakers(speaking))
      .on('quality', ({ identity, quality }) => this.showQuality(identity, quality))
      .on('chat', ({ from, text }) => this.addChat(from, text, false))
      .on('error', ({ code }) => this.say('error', code === 'publish_failed' ? 'room.publish_failed' : errorKey(code)))
      .on('change', () => this.updateControls())
      .on('usage', (bytes) => {
        if (this.dataUsedLine) showDataUsed(this.dataUsedLine, bytes);
      })
      .on('path', (path) => this.showPath(path))
      .on('reception', (audioOnly) => this.showReception(audioOnly));

    this.langSlot = h('div.room-lang');
    this.status = h('div.room-status', { id: 'room-status', 'aria-live': 'polite' });
    this.body = h('div.room-body');
    this.root = h('section.room', { 'data-state': this.state },
      h('header.room-bar', {},
        h('div.brand', {}, h('img', { src: '/icon.svg', alt: '' }), tx('span', 'app.name')),
        h('span.room-name', {}, raw(room)),
        h('div.spacer'),
        this.langSlot),
      this.status, this.body);
    this.renderLang();
  }

  // What tests (and anyone debugging) can read on window.tongxinRoom.
  expose() {
    const s = this;
    const c = this.client;
    window.tongxinRoom = {
      get state() { return s.state; },
      get room() { return s.room; },
      get identity() { return c.identity; },
      get resumed() { return c.resumed; },
      get participants() {
        return Object.fromEntries([...c.participants].map(([id, p]) => [id, JSON.parse(JSON.stringify(p))]));
      },
      get chat() { return s.chat.slice(); },
      get events() { return c.events.slice(); },
      get errors() { return c.errors.slice(); },
      get local() {
        const tracks = c.local.stream ? c.local.stream.getTracks() : [];
        const track = (x) => ({ kind: x.kind, enabled: x.enabled, width: x.getSettings().width, height: x.getSettings().height });
        return { muted: { ...c.local.muted }, published: [...c.published], tracks: tracks.map(track) };
      },
      get channel() { return c.channel; },
      get dataUsedBytes() { return c.dataUsed; },
      // Frames shown by the tile video of `identity` (-1 without a tile or a track).
      frames(identity, source = 'camera') {
        const tile = s.tiles.get(identity);
        const v = tile && tile[source === 'screen' ? 'screenVideo' : 'camVideo'];
        return v && v.srcObject ? v.getVideoPlaybackQuality().totalVideoFrames : -1;
      },
      stats: () => c.inboundStats(),
      outbound: () => c.outboundStats(),
      // The rids of each own source the server asked to pause.
      get paused() { return Object.fromEntries(Object.entries(c.paused).map(([k, v]) => [k, [...v]])); },
      // A raw protocol frame, for tests that ask what the controls do not offer.
      send: (msg) => c.send(msg),
    };
  }

  renderLang() {
    this.langSlot.replaceChildren(languageSelect(async (tag) => {
      await setLocale(tag);
      retranslate(this.root);
      this.renderLang();
      bumpRenders();
    }));
  }

  setState(state) {
    this.state = state;
    this.root.dataset.state = state;
  }

  say(kind, key, vars) {
    this.status.replaceChildren(notice(kind, key, vars));
  }

  start() {
    this.expose();
    if (!this.token) {
      this.showTokenForm();
      return;
    }
    if (this.client.storedResume()) {
      // The page was closed or reloaded while in the room: go straight back in, within the
      // server's grace period, as the same participant.
      this.acquire().then(() => this.join());
    } else {
      this.showPrejoin();
    }
  }

  destroy() {
    this.client.close();
    this.stopMedia();
    this.root.remove();
  }

  // ---- token form and pre-join -----------------------------------------------------------

  showTokenForm() {
    this.setState('token');
    const input = h('textarea', { id: 'token-input', rows: 3, required: true, autocapitalize: 'none', spellcheck: 'false' });
    const status = h('div');
    const form = h('form.card.room-token', {
      onsubmit: (ev) => {
        ev.preventDefault();
        const text = input.value.trim();
        const fromLink = text.includes('#') ? new URLSearchParams(text.split('#')[1]).get('token') : null;
        const token = fromLink || text;
        if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) {
          status.replaceChildren(notice('error', 'room.token.invalid'));
          return;
        }
        history.replaceState(history.state, '', `${location.pathname}#token=${token}`);
        showRoom(this.root.parentElement);
      },
    },
    tx('h1', 'room.token.title'),
    tx('p.muted', 'room.token.help'),
    h('label', {}, tx('span', 'room.token.label'), input),
    status,
    tx('button', 'room.token.submit', null, { type: 'submit' }));
    this.body.replaceChildren(form);
  }

  showPrejoin() {
    this.setState('prejoin');
    this.status.replaceChildren();
    const canPublish = !this.grant || this.grant.canPublish;
    const who = this.grant && (this.grant.name || this.grant.identity);
    this.preview = videoEl({ id: 'preview', class: 'preview' });
    this.meter = levelMeter('meter.level', { id: 'mic-level' });
    this.camSelect = h('select', { id: 'camera-select', onchange: () => this.chooseDevice('camera', this.camSelect.value) });
    this.micSelect = h('select', { id: 'mic-select', onchange: () => this.chooseDevice('microphone', this.micSelect.value) });
    this.deviceNote = h('div');
    this.netCheck = h('p.net-check', { id: 'net-check', 'data-path': 'checking' }, tx('span.muted', 'room.netcheck.running'));
    const join = tx('button', 'room.join', null, { id: 'join', disabled: true, onclick: () => this.join() });
    const panel = h('div.card.prejoin', {},
      tx('h1', canPublish ? 'room.prejoin.title' : 'room.token.title'),
      who ? h('p.who', {}, tx('span.muted', 'room.prejoin.as'), ' ', h('strong', {}, raw(who)),
        this.grant.name && this.grant.identity ? h('span.muted', {}, ' (', raw(this.grant.identity), ')') : null) : null,
      canPublish
        ? h('div.prejoin-media', {},
          h('div.preview-box', {}, this.preview),
          h('div.prejoin-devices', {},
            h('label', {}, tx('span', 'room.source.camera'), this.camSelect),
            h('label', {}, tx('span', 'room.source.microphone'), this.micSelect),
            h('label', {}, tx('span', 'room.mic_level'), this.meter),
            this.deviceNote))
        : notice('ok', 'room.prejoin.viewer'),
      this.netCheck,
      join);
    this.body.replaceChildren(panel);
    this.checkNetwork();
    if (canPublish) this.acquire().finally(() => { join.disabled = false; });
    else join.disabled = false;
  }

  // Which way media will go, checked before joining (a school network that blocks UDP shows
  // up here, not as a black tile later).
  async checkNetwork() {
    const line = this.netCheck;
    const path = await this.client.checkNetwork();
    if (line !== this.netCheck) return;
    line.dataset.path = path || 'none';
    line.replaceChildren(...(path
      ? [tx('span.muted', 'room.path.label'), ' ', h('strong', {}, raw(PATH_NAMES[path])), ' ', tx('span.muted', `rooms.path.${path}`)]
      : [notice('error', 'room.netcheck.failed')]));
  }

  chooseDevice(kind, deviceId) {
    this.client.setDevice(kind, deviceId);
    this.acquire();
  }

  // Opens the camera and microphone, unless the token only lets us watch, and shows them.
  async acquire() {
    if (this.grant && !this.grant.canPublish) return;
    const stream = await this.client.acquire();
    if (this.deviceNote) {
      this.deviceNote.replaceChildren(stream && stream.getVideoTracks().length ? '' : notice('error', 'room.no_devices'));
    }
    if (this.preview && this.state === 'prejoin') setMedia(this.preview, stream && stream.getVideoTracks()[0] || null);
    this.startMeter();
    await this.listDevices();
  }

  async listDevices() {
    if (!this.camSelect || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    const fill = (select, kind, track) => {
      const current = track && track.getSettings().deviceId;
      const list = devices.filter((d) => d.kind === kind);
      select.replaceChildren(...list.map((d, i) => {
        const opt = h('option', { value: d.deviceId, selected: d.deviceId === current });
        if (d.label) opt.append(raw(d.label)); else tr(opt, 'room.device_n', { n: i + 1 });
        return opt;
      }));
      select.disabled = list.length < 2;
    };
    const s = this.client.local.stream;
    fill(this.camSelect, 'videoinput', s && s.getVideoTracks()[0]);
    fill(this.micSelect, 'audioinput', s && s.getAudioTracks()[0]);
  }

  // The microphone level meter, sampled ten times a second (cheap on a phone).
  startMeter() {
    if (this.meterTimer) clearInterval(this.meterTimer);
    this.meterTimer = null;
    const stream = this.client.local.stream;
    const track = stream && stream.getAudioTracks()[0];
    if (!track || !window.AudioContext) return;
    if (!this.audioCtx) {
      this.audioCtx = new AudioContext();
      // Browsers start audio only after a user gesture.
      document.addEventListener('pointerdown', () => this.audioCtx.resume(), { once: true });
    }
    const source = this.audioCtx.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.audioCtx.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    this.meterTimer = setInterval(() => {
      const meters = [this.meter, this.selfMeter].filter((m) => m && m.isConnected);
      if (!meters.length) return;
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const x of data) sum += x * x;
      // RMS on a rough dB scale: −60 dBFS shows empty, 0 dBFS full.
      const db = 10 * Math.log10(sum / data.length || 1e-9);
      const level = Math.max(0, Math.min(1, (db + 60) / 60));
      for (const m of meters) m.value = track.enabled ? level : 0;
    }, 100);
  }

  // ---- the room view ---------------------------------------------------------------------

  join() {
    if (this.audioCtx) this.audioCtx.resume();
    this.client.join();
    if (!this.selfTile) {
      this.buildRoomView();
      this.selfTile = makeTile('', true);
      this.stage.prepend(this.selfTile.el);
      this.selfMeter = levelMeter('meter.level.self-level');
      this.selfTile.el.querySelector('.tile-bar').append(this.selfMeter);
    }
    this.body.replaceChildren(this.roomView);
    this.updateControls();
  }

  buildRoomView() {
    if (this.roomView) return this.roomView;
    const c = this.client;
    this.stage = h('div.stage', { id: 'stage' });
    this.nobody = tx('p.muted.nobody', 'room.nobody');
    this.count = h('p.muted.count');
    this.chatLog = h('ol.chat-log', { id: 'chat-log' });
    this.chatInput = h('input', { id: 'chat-input', autocomplete: 'off', maxlength: 1000 });
    trAttr(this.chatInput, 'placeholder', 'room.chat.placeholder');
    trAttr(this.chatInput, 'aria-label', 'room.chat.placeholder');
    this.chatSend = tx('button', 'room.chat.send', null, { id: 'chat-send', type: 'submit', disabled: true });
    const chatForm = h('form.chat-form', {
      onsubmit: (ev) => {
        ev.preventDefault();
        if (this.sendChat(this.chatInput.value)) this.chatInput.value = '';
      },
    }, this.chatInput, this.chatSend);
    this.micButton = h('button.secondary', { id: 'mute-mic', onclick: () => c.toggleMute('microphone') });
    this.camButton = h('button.secondary', { id: 'mute-camera', onclick: () => c.toggleMute('camera') });
    this.screenButton = h('button.secondary', { id: 'share-screen', onclick: () => this.toggleScreen() });
    this.audioButton = tx('button', 'room.enable_audio', null, { id: 'enable-audio', hidden: true, onclick: () => this.unblockAudio() });
    const leave = tx('button.danger', 'room.leave', null, { id: 'leave', onclick: () => c.leave() });
    const controls = h('div.controls', { role: 'toolbar' }, this.micButton, this.camButton, this.screenButton, this.audioButton, leave);
    trAttr(controls, 'aria-label', 'room.controls');
    this.roomView = h('div.room-main', {},
      h('div.stage-wrap', {}, this.count, this.stage, this.nobody, controls, this.buildDataBar()),
      h('aside.chat', {}, tx('h2', 'room.chat.title'), this.chatLog, chatForm));
    this.updateControls();
    return this.roomView;
  }

  // What this session cost in data, and the cap on what the server sends us.
  buildDataBar() {
    const c = this.client;
    this.dataUsedLine = h('p.data-used', { id: 'data-used' });
    showDataUsed(this.dataUsedLine, c.dataUsed);
    this.pathLine = h('p.net-path', { id: 'net-path', hidden: !c.path });
    this.showPath(c.path);
    this.link = linkControls(() => this.client);
    return h('div.data-bar', {}, this.link.audioOnly, this.dataUsedLine, this.pathLine, this.link.budget);
  }

  // The server stopped (or resumed) all video for us because the link cannot carry it.
  showReception(audioOnly) {
    if (this.link) this.link.showReception(audioOnly);
  }

  // Which way the media travels (UDP, TCP when UDP is blocked, or a TURN relay): the first thing
  // to know when a school network misbehaves.
  showPath(path) {
    if (!this.pathLine || !PATH_NAMES[path]) return;
    this.pathLine.hidden = false;
    this.pathLine.dataset.path = path;
    this.pathLine.replaceChildren(tx('span.muted', 'room.path.label'), ' ', h('strong', {}, raw(PATH_NAMES[path])), ' ',
      tx('span.muted', `rooms.path.${path}`));
  }

  updateControls() {
    if (!this.micButton) return;
    const { local, me, participants } = this.client;
    const has = (kind) => !!(local.stream && local.stream.getTracks().some((x) => x.kind === kind));
    const canPublish = !me || me.permissions.publish;
    const set = (button, source, kind, onKey, offKey) => {
      const muted = local.muted[source];
      tr(button, muted ? offKey : onKey);
      button.setAttribute('aria-pressed', String(muted));
      button.hidden = !has(kind) || !canPublish;
    };
    set(this.micButton, 'microphone', 'audio', 'room.mute_mic', 'room.unmute_mic');
    set(this.camButton, 'camera', 'video', 'room.camera_off_action', 'room.camera_on_action');
    tr(this.screenButton, local.screen ? 'room.stop_share' : 'room.share_screen');
    this.screenButton.setAttribute('aria-pressed', String(!!local.screen));
    this.screenButton.hidden = !canPublish || !navigator.mediaDevices.getDisplayMedia;
    this.screenButton.disabled = !this.client.publishing;
    const canChat = !me || me.permissions.publish_data;
    this.chatSend.disabled = !canChat || this.client.channel !== 'open';
    this.chatInput.disabled = !canChat;
    tr(this.count, 'room.participants', { n: participants.size + 1 });
    this.nobody.hidden = participants.size > 0;
    if (this.selfTile) this.updateSelfTile();
  }

  toggleScreen() {
    this.client.toggleScreen().catch((e) => {
      if (e.name !== 'NotAllowedError') this.say('error', 'room.share_failed');
    });
  }

  tileFor(identity) {
    let tile = this.tiles.get(identity);
    if (!tile) {
      tile = makeTile(identity, false);
      this.tiles.set(identity, tile);
      this.stage.append(tile.el);
    }
    return tile;
  }

  updateTile(p) {
    const tile = this.tileFor(p.identity);
    const [cam, screen, mic] = ['camera', 'screen', 'microphone'].map((source) => p.tracks.find((x) => x.source === source) || null);
    const remote = (track) => this.client.remoteTrack(track);
    showTileMedia(tile, {
      cam: remote(cam), camShown: !!(cam && !cam.muted), screen: remote(screen), screenShown: !!screen, micOff: !mic || mic.muted,
    });
    setMedia(tile.audio, mic && !mic.muted ? remote(mic) : null, (el) => this.audioWasBlocked(el));
    tile.el.dataset.screen = String(!!screen);
    const name = p.name || p.identity;
    relabel(tile.name, name, () => [raw(name)]);
    relabel(tile.role, p.role, () => [roleText(p.role) || '']);
    setQuality(tile.quality, p.quality);
  }

  removeTile(identity) {
    const tile = this.tiles.get(identity);
    if (!tile) return;
    releaseTile(tile);
    tile.el.remove();
    this.tiles.delete(identity);
  }

  updateSelfTile() {
    const { local, me, identity } = this.client;
    const s = local.stream;
    showTileMedia(this.selfTile, {
      cam: s && s.getVideoTracks()[0] || null,
      camShown: !!(s && s.getVideoTracks().length && !local.muted.camera),
      screen: local.screen && local.screen.getVideoTracks()[0] || null,
      screenShown: !!local.screen,
      micOff: !(s && s.getAudioTracks().length) || local.muted.microphone,
    });
    const name = (me && me.name) || identity || '';
    relabel(this.selfTile.name, name, () => [raw(name), ' ', tx('span.muted', 'room.you')]);
  }

  showSpeakers(speaking) {
    for (const [identity, tile] of this.tiles) tile.el.dataset.speaking = String(speaking.has(identity));
    if (this.selfTile) this.selfTile.el.dataset.speaking = String(speaking.has(this.client.identity));
  }

  showQuality(identity, quality) {
    if (identity !== this.client.identity) setQuality(this.tileFor(identity).quality, quality);
    else if (this.selfTile) setQuality(this.selfTile.quality, quality);
  }

  audioWasBlocked(el) {
    this.audioBlocked.add(el);
    if (this.audioButton) this.audioButton.hidden = false;
  }

  unblockAudio() {
    for (const el of this.audioBlocked) el.play().catch(() => {});
    this.audioBlocked.clear();
    this.audioButton.hidden = true;
    if (this.audioCtx) this.audioCtx.resume();
  }

  // ---- chat ------------------------------------------------------------------------------

  sendChat(text) {
    text = String(text || '').trim();
    if (!text) return false;
    if (!this.client.sendChat(text)) {
      this.say('error', 'room.chat.unavailable');
      return false;
    }
    this.addChat(this.client.identity, text, true);
    return true;
  }

  addChat(from, text, self) {
    const { me, identity, participants } = this.client;
    const p = from && participants.get(from);
    const name = self ? (me.name || identity) : p ? p.name || p.identity : from;
    this.chat.push({ from, name, text, self, at: Date.now() });
    const who = from === null ? tx('span.chat-who', 'room.chat.service') : h('span.chat-who', {}, raw(name));
    this.chatLog.append(h('li.chat-msg', { 'data-from': from ?? '', 'data-self': String(self) }, who, h('span.chat-text', {}, raw(text))));
    this.chatLog.scrollTop = this.chatLog.scrollHeight;
  }

  // ---- the session's course --------------------------------------------------------------

  onState({ state, reason, code }) {
    switch (state) {
      case 'joining':
        this.setState(state);
        this.say('ok', 'room.joining');
        break;
      case 'joined':
        for (const identity of this.tiles.keys()) if (!this.client.participants.has(identity)) this.removeTile(identity);
        this.selfTile.el.dataset.identity = this.client.identity;
        for (const p of this.client.participants.values()) this.updateTile(p);
        this.setState(state);
        this.status.replaceChildren();
        this.updateControls();
        break;
      case 'reconnecting':
        this.setState(state);
        this.say('error', 'room.reconnecting');
        break;
      case 'left':
        this.showEnded(state, 'ok', 'room.left', true);
        break;
      case 'removed': {
        const why = REMOVED.includes(reason) ? reason : 'other';
        this.showEnded(state, 'error', `room.removed.${why}`, why === 'timeout' || why === 'replaced');
        break;
      }
      case 'failed':
        this.showEnded(state, 'error', errorKey(code), code !== 'unsupported_protocol' && code !== 'unauthorized');
        break;
      case 'disconnected':
        this.showEnded(state, 'error', 'room.disconnected', true);
        break;
    }
  }

  showEnded(state, kind, key, canRejoin) {
    this.setState(state);
    this.stopMedia();
    this.status.replaceChildren();
    const rejoin = canRejoin ? tx('button', 'room.rejoin', null, { id: 'rejoin', onclick: () => this.rejoin() }) : null;
    this.body.replaceChildren(h('div.card.room-ended', {}, notice(kind, key), rejoin));
  }

  rejoin() {
    for (const identity of [...this.tiles.keys()]) this.removeTile(identity);
    this.selfTile = null;
    this.roomView = null;
    this.chat = [];
    this.showPrejoin();
  }

  stopMedia() {
    clearInterval(this.meterTimer);
    for (const tile of this.tiles.values()) releaseTile(tile);
  }
}

let current = null;

// Shows the room named by the path, with the token in the fragment. Rendering again for the
// same room and token keeps the running session.
export function showRoom(container) {
  const room = roomFromPath();
  const token = tokenFromHash();
  if (current && current.room === room && current.token === token) {
    if (current.root.parentElement !== container) container.replaceChildren(current.root);
    return;
  }
  if (current) current.destroy();
  current = new RoomSession(room, token);
  container.replaceChildren(current.root);
  current.start();
}
