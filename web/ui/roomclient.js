// The connection layer of the room page: one WebSocket (sfu/PROTOCOL.md, protocol 1) and two
// RTCPeerConnections — `publisher` (ours, we offer) and `subscriber` (everyone else's tracks and
// the `tongxin` data channel, the server offers) — with the camera, microphone and screen it
// publishes. It keeps the resume credential in localStorage and reconnects with backoff within
// the server's grace period. No DOM: the page (room.js) subscribes to its events.

const PROTOCOL = 1;
// Reconnect attempts back off 1 s, 2 s, 4 s… within the server's default 20 s grace period.
const RECONNECT_BUDGET_MS = 20000;
const PING_MS = 20000;
const SOURCES = ['microphone', 'camera', 'screen'];
// Errors that end a join attempt: the server closes the socket after them.
const FATAL_ON_JOIN = ['unsupported_protocol', 'unauthorized', 'room_full', 'too_many_rooms', 'room_closed'];
// Small and slow: a classroom on a weak rural link cannot carry more, and cheap phones encode it.
const CAMERA = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15, max: 15 } };
const CAMERA_KBPS = 500;
// A simulcast camera is opened at 720p, so its top layer is worth its megabit.
const CAMERA_HD = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 15, max: 15 } };
// The room page's camera as three layers by rid, lowest first; the server forwards each viewer
// the one that fits its link and tells us (`layers`) which ones nobody receives. The lowest stays
// near 60 kbit/s with packet headers, so it still fits a 150 kbit/s link beside the audio and its
// redundancy (≈ 70 kbit/s on the wire while the link loses packets).
export const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 56000, maxFramerate: 15 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 300000, maxFramerate: 15 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1000000, maxFramerate: 15 },
];
const SCREEN_KBPS = 300;
const DEVICES_KEY = 'tongxin.devices';
// The receive budgets offered, kbit/s (null: no cap); the chosen one is kept per device.
export const BUDGETS = [null, 300, 150, 64];
const BUDGET_KEY = 'tongxin.budget';
const USAGE_MS = 2500; // how often the data used is sampled
const resumeKey = (room) => `tongxin.resume.${room}`;

function loadJson(key) {
  try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch { return null; }
}

// The receive budget chosen on this device (kbit/s, null: no cap).
export function loadBudget() {
  const kbps = loadJson(BUDGET_KEY);
  return BUDGETS.includes(kbps) ? kbps : null;
}

// Keeps the receive budget on this device; returns it (null for anything not offered).
export function saveBudget(kbps) {
  const budget = BUDGETS.includes(kbps) ? kbps : null;
  localStorage.setItem(BUDGET_KEY, JSON.stringify(budget));
  return budget;
}

// Bytes a connection carried both ways so far: its transports' counters, or the candidate
// pairs' where the browser has no transport statistics.
async function connectionBytes(pc) {
  let transport = null;
  let pairs = 0;
  for (const s of (await pc.getStats()).values()) {
    const bytes = (s.bytesReceived || 0) + (s.bytesSent || 0);
    if (s.type === 'transport' && (s.bytesReceived !== undefined || s.bytesSent !== undefined)) transport = (transport || 0) + bytes;
    else if (s.type === 'candidate-pair') pairs += bytes;
  }
  return transport ?? pairs;
}

// How a connection's media travels, from the pair ICE selected: 'turn' through a relay, 'tcp'
// (ICE over TCP, UDP blocked), 'udp'; null while nothing is selected.
async function connectionPath(pc) {
  const report = await pc.getStats();
  for (const s of report.values()) {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
    const pair = report.get(s.selectedCandidatePairId);
    const local = pair && report.get(pair.localCandidateId);
    if (!local) return null;
    if (local.candidateType === 'relay') return 'turn';
    return local.protocol === 'tcp' ? 'tcp' : 'udp';
  }
  return null;
}

// Puts H.264 constrained baseline (packetization-mode=1) first when this browser can send it:
// cheap phones decode it in hardware, and the SFU forwards it to every kind of client.
function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpSender.getCapabilities) return;
  const baseline = (c) => c.mimeType.toLowerCase() === 'video/h264' &&
    /packetization-mode=1/.test(c.sdpFmtpLine || '') && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || '');
  const sendable = (RTCRtpSender.getCapabilities('video') || { codecs: [] }).codecs;
  if (!sendable.some(baseline)) return;
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
  try {
    transceiver.setCodecPreferences([...codecs.filter(baseline), ...codecs.filter((c) => !baseline(c))]);
  } catch (e) {
    console.warn('codec preferences not applied', e);
  }
}

// A participant as the server sent it, with the fields the page relies on always present.
function normalize(p) {
  return {
    identity: p.identity,
    name: typeof p.name === 'string' && p.name ? p.name : null,
    role: p.role,
    kind: p.kind,
    permissions: { publish: false, subscribe: true, publish_data: false, ...(p.permissions || {}) },
    tracks: Array.isArray(p.tracks) ? p.tracks.map((x) => ({ ...x })) : [],
    quality: null,
  };
}

// One participant's connection to one room. Events, subscribed with `on(type, fn)`:
//   state        {state, reason?, code?}: joining, joined, reconnecting, or the end of the
//                session: left, removed (with the server's reason), failed (with the error
//                code), disconnected
//   participant  a remote participant (as `normalize` shapes it) appeared or changed
//   left         the identity of a remote participant that left
//   tracks       the remote media tracks were matched to participants again
//   speakers     the Set of identities speaking now
//   quality      {identity, quality} of a participant, ourselves included
//   chat         {from, text}: a chat line from someone else (`from` null for a service)
//   data         a data channel message (the JSON object) from a service (`from` null) that is
//                not a chat line, e.g. a lesson's {"type": "lesson_state", …}
//   error        {code}: a server error that leaves the session running, or `publish_failed`
//   change       local media, publishing, permissions, the participant count or the data
//                channel changed
//   usage        the bytes both connections carried in this page's life (`dataUsed`) grew
//   reception    `audioOnly` changed: true while the server sends no video because this
//                link (or our budget) cannot carry it; audio and data go on
//
// Options: `simulcast` publishes the camera as CAMERA_LAYERS (the room page); without it the
// camera is one encoding, `cameraEncoding` (a lesson's pages, which size it themselves).
export class RoomClient {
  constructor(room, token, { simulcast = false } = {}) {
    this.room = room;
    this.token = token;
    this.listeners = {};
    this.state = 'idle';
    this.identity = null;
    this.me = null;
    this.resumed = false;
    this.joinedBefore = false;
    this.participants = new Map(); // identity -> participant as the server described it
    this.remoteTracks = new Map(); // track id -> MediaStreamTrack on the subscriber connection
    this.mids = {}; // subscriber mid -> track id, from the latest offer
    this.events = [];
    this.errors = [];
    this.ws = null;
    this.sub = null;
    this.pub = null;
    this.dc = null;
    this.epoch = 0; // bumped on every `joined`; work queued for an older connection is dropped
    this.subQueue = Promise.resolve();
    this.pubQueue = Promise.resolve();
    this.pendingPublish = null;
    this.published = new Set();
    this.tx = {}; // source -> publisher transceiver
    this.local = { stream: null, screen: null, muted: { microphone: false, camera: false } };
    this.devices = loadJson(DEVICES_KEY) || {};
    this.reconnect = null;
    this.timers = new Set();
    this.pingTimer = null;
    this.budget = loadBudget(); // kbit/s or null, sent after every `joined`
    this.audioOnly = false; // the server sends no video: the link is too weak
    // The camera's RTCRtpEncodingParameters (maxBitrate, maxFramerate, scaleResolutionDownBy);
    // a lesson's classroom terminal sends small until it is brought on stage.
    this.cameraEncoding = { maxBitrate: CAMERA_KBPS * 1000 };
    this.simulcast = simulcast;
    // Per source: the rids the server last asked us to pause (its `layers` frames).
    this.paused = {};
    // Bytes per peer connection this page ever had, so a resume's new connections add to the
    // total; the slot of a connection survives its closing without keeping it alive.
    this.usage = { bytes: [], slot: new WeakMap() };
    this.usageTimer = null;
  }

  on(type, fn) {
    (this.listeners[type] ||= []).push(fn);
    return this;
  }

  emit(type, detail) {
    for (const fn of this.listeners[type] || []) fn(detail);
  }

  setState(state, detail) {
    this.state = state;
    this.emit('state', { state, ...detail });
  }

  // Ends the session: connections closed, camera and microphone released.
  end(state, detail) {
    this.teardown();
    this.setState(state, detail);
  }

  later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  get channel() {
    return this.dc ? this.dc.readyState : null;
  }

  get publishing() {
    return !!this.pub;
  }

  remoteTrack(track) {
    return (track && this.remoteTracks.get(track.id)) || null;
  }

  // The resume credential of an earlier join with this token (the page was closed in the room).
  storedResume() {
    const stored = loadJson(resumeKey(this.room));
    return (stored && stored.token === this.token && stored.resume) || null;
  }

  forgetResume() {
    localStorage.removeItem(resumeKey(this.room));
  }

  // A fresh join token for the same room and identity (the old one is about to expire): later
  // reconnects use it, and still resume the same participant.
  setToken(token) {
    const stored = this.storedResume();
    this.token = token;
    if (stored) localStorage.setItem(resumeKey(this.room), JSON.stringify({ token, resume: stored }));
  }

  // ---- camera and microphone -------------------------------------------------------------

  setDevice(kind, deviceId) {
    this.devices[kind] = deviceId;
    localStorage.setItem(DEVICES_KEY, JSON.stringify(this.devices));
  }

  // Opens the camera and microphone (the chosen ones when still present); falls back to the
  // microphone alone, then to nothing, so a pupil without a camera can still take part.
  async acquire() {
    this.stopLocal();
    const audio = this.devices.microphone ? { deviceId: { ideal: this.devices.microphone } } : true;
    const size = this.simulcast ? CAMERA_HD : CAMERA;
    const video = this.devices.camera ? { ...size, deviceId: { ideal: this.devices.camera } } : size;
    let stream = null;
    for (const want of [{ audio, video }, { audio }, { video }]) {
      try {
        stream = await navigator.mediaDevices.getUserMedia(want);
        break;
      } catch (e) {
        console.warn('getUserMedia', JSON.stringify(Object.keys(want)), e.name);
      }
    }
    this.local.stream = stream;
    for (const track of stream ? stream.getTracks() : []) {
      track.enabled = !this.local.muted[track.kind === 'audio' ? 'microphone' : 'camera'];
    }
    return stream;
  }

  stopLocal() {
    for (const s of [this.local.stream, this.local.screen]) for (const track of s ? s.getTracks() : []) track.stop();
    this.local.stream = null;
    this.local.screen = null;
  }

  // ---- signalling ------------------------------------------------------------------------

  join() {
    this.participants = new Map();
    this.setState('joining');
    this.connect();
  }

  // STUN/TURN servers for this token (TURN credentials are short-lived: fetched again when they
  // are about to expire). Without them (none configured, or the request failed) ICE uses the
  // server's UDP and TCP candidates only.
  async loadIceServers() {
    if (this.ice && this.ice.token === this.token && (!this.ice.expiresAt || this.ice.expiresAt - Date.now() > 60_000)) return;
    try {
      const res = await fetch('/api/v1/ice-servers', { method: 'POST', headers: { authorization: `Bearer ${this.token}` } });
      const body = res.ok ? await res.json() : null;
      this.ice = { token: this.token, servers: (body && body.ice_servers) || [], expiresAt: (body && body.expires_at) || 0 };
    } catch (e) {
      console.warn('ice-servers', e);
      this.ice = { token: this.token, servers: [], expiresAt: Date.now() + 60_000 };
    }
  }

  // The pre-join network check: a data-only connection to the media server (POST
  // /probe/{room}) that says which path works — 'udp', 'tcp' (UDP blocked), 'turn' (through a
  // relay) — or null when none does within the wait. The connection is closed afterwards.
  async checkNetwork(waitMs = 15000) {
    await this.loadIceServers();
    const pc = this.peerConnection();
    try {
      pc.createDataChannel('probe');
      await pc.setLocalDescription(await pc.createOffer());
      // No trickle on this endpoint: the offer goes once gathering is done (or after 3 s).
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        const done = () => { if (pc.iceGatheringState === 'complete') resolve(); };
        pc.addEventListener('icegatheringstatechange', done);
        setTimeout(resolve, 3000);
      });
      const res = await fetch(`/probe/${encodeURIComponent(this.room)}`, {
        method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${this.token}` }, body: pc.localDescription.sdp,
      });
      if (res.status !== 201) return null;
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      const end = Date.now() + waitMs;
      while (Date.now() < end) {
        if (pc.connectionState === 'failed') return null;
        if (pc.connectionState === 'connected') return await connectionPath(pc);
        await new Promise((r) => setTimeout(r, 200));
      }
      return null;
    } catch (e) {
      console.warn('network check', e);
      return null;
    } finally {
      pc.close();
    }
  }

  peerConnection() {
    return new RTCPeerConnection({ iceServers: (this.ice && this.ice.servers) || [] });
  }

  connect() {
    // The session may have ended while the servers were fetched: then no socket is opened.
    this.loadIceServers().finally(() => {
      if (['joining', 'reconnecting', 'joined'].includes(this.state)) this.openSocket();
    });
  }

  openSocket() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/rtc`);
    this.ws = ws;
    ws.onopen = () => {
      const msg = { type: 'join', protocol: PROTOCOL, token: this.token };
      const resume = this.storedResume();
      if (resume) msg.resume = resume;
      ws.send(JSON.stringify(msg));
    };
    ws.onmessage = (ev) => {
      if (ws === this.ws) this.onMessage(ev.data);
    };
    ws.onclose = () => {
      if (ws === this.ws) this.onSocketClosed();
    };
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  onMessage(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    if (!['quality', 'speakers', 'pong', 'offer', 'publish_answer', 'layers'].includes(msg.type)) {
      const who = typeof msg.participant === 'string' ? msg.participant : (msg.participant && msg.participant.identity) || msg.identity;
      this.events.push({ type: msg.type, identity: who, reason: msg.reason, code: msg.code, at: Date.now() });
      if (this.events.length > 500) this.events.shift();
    }
    const handler = {
      joined: () => this.onJoined(msg),
      offer: () => this.onOffer(msg),
      publish_answer: () => this.onPublishAnswer(msg),
      participant_joined: () => this.upsert(msg.participant),
      participant_left: () => this.onLeft(msg),
      track_published: () => this.onTrackPublished(msg),
      track_unpublished: () => this.onTrackUnpublished(msg),
      track_muted: () => this.onTrackMuted(msg),
      permissions_changed: () => this.onPermissions(msg),
      speakers: () => this.emit('speakers', new Set((msg.speakers || []).map((s) => s.identity))),
      quality: () => this.onQuality(msg),
      layers: () => this.onLayers(msg),
      reception: () => this.setAudioOnly(!!msg.audio_only),
      removed: () => this.onRemoved(msg),
      error: () => this.onError(msg),
    }[msg.type];
    if (handler) handler();
  }

  onJoined(msg) {
    this.epoch += 1;
    this.setAudioOnly(false); // a new subscriber connection starts with video
    this.closeConnections();
    this.me = normalize(msg.participant);
    this.identity = this.me.identity;
    this.resumed = !!msg.resumed;
    if (!this.joinedBefore) {
      // A reopened page takes over its tracks' mute state; after a reconnect of this page, its
      // own state wins (it is re-sent after the fresh `publish`).
      for (const track of this.me.tracks) if (track.source !== 'screen' && track.muted) this.applyMute(track.source, true);
    }
    this.joinedBefore = true;
    this.reconnect = null;
    localStorage.setItem(resumeKey(this.room), JSON.stringify({ token: this.token, resume: msg.resume }));
    this.participants = new Map(((msg.room && msg.room.participants) || []).map((p) => [p.identity, this.keepQuality(normalize(p))]));
    this.remoteTracks = new Map();
    this.mids = {};
    this.setState('joined');
    if (this.me.permissions.publish && this.local.stream) this.startPublishing();
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_MS);
    this.send({ type: 'budget', kbps: this.budget });
    if (!this.usageTimer) this.usageTimer = setInterval(() => this.sampleUsage(), USAGE_MS);
  }

  // A participant described afresh keeps the last quality report about it.
  keepQuality(p) {
    const old = this.participants.get(p.identity);
    if (old && old.quality) p.quality = old.quality;
    return p;
  }

  onOffer(msg) {
    const epoch = this.epoch;
    this.subQueue = this.subQueue.then(async () => {
      if (epoch !== this.epoch) return;
      if (!this.sub) this.sub = this.makeSubscriber();
      const pc = this.sub;
      this.mids = msg.tracks || {};
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      if (epoch !== this.epoch) return;
      this.send({ type: 'answer', sdp: pc.localDescription.sdp });
      this.resolveTracks();
    }).catch((e) => {
      console.warn('subscriber negotiation failed', e);
      this.emit('error', { code: 'bad_sdp' });
    });
  }

  makeSubscriber() {
    const pc = this.peerConnection();
    pc.ontrack = () => this.resolveTracks();
    pc.ondatachannel = (ev) => {
      if (ev.channel.label === 'tongxin') this.attachChannel(ev.channel);
    };
    pc.onicecandidate = (ev) => this.trickle(pc, 'subscriber', ev.candidate);
    pc.onconnectionstatechange = () => this.watchIce(pc);
    return pc;
  }

  // Which remote track each receiving m-line carries now (the mapping changes with offers).
  resolveTracks() {
    const byId = new Map();
    if (this.sub) {
      for (const tr of this.sub.getTransceivers()) {
        const id = tr.mid !== null ? this.mids[tr.mid] : undefined;
        if (id && tr.receiver && tr.receiver.track) byId.set(id, tr.receiver.track);
      }
    }
    this.remoteTracks = byId;
    this.emit('tracks');
  }

  upsert(view) {
    if (!view || !view.identity || view.identity === this.identity) return;
    const p = this.keepQuality(normalize(view));
    this.participants.set(p.identity, p);
    this.emit('participant', p);
    this.emit('change');
  }

  onLeft(msg) {
    this.participants.delete(msg.identity);
    this.emit('left', msg.identity);
    this.emit('change');
  }

  participant(identity) {
    return identity === this.identity ? this.me : this.participants.get(identity);
  }

  onTrackPublished(msg) {
    const p = this.participant(msg.participant);
    if (!p || !msg.track) return;
    p.tracks = [...p.tracks.filter((x) => x.id !== msg.track.id), msg.track];
    if (p !== this.me) this.emit('participant', p);
  }

  onTrackUnpublished(msg) {
    const p = this.participant(msg.participant);
    if (!p) return;
    p.tracks = p.tracks.filter((x) => x.id !== msg.track);
    if (p !== this.me) this.emit('participant', p);
  }

  onTrackMuted(msg) {
    if (msg.participant === this.identity) {
      // A service muted (or unmuted) one of our tracks: follow it locally.
      const own = this.me.tracks.find((x) => x.id === msg.track);
      if (!own) return;
      own.muted = !!msg.muted;
      if (own.source !== 'screen') this.applyMute(own.source, own.muted);
      return;
    }
    const p = this.participants.get(msg.participant);
    const track = p && p.tracks.find((x) => x.id === msg.track);
    if (!track) return;
    track.muted = !!msg.muted;
    this.emit('participant', p);
  }

  onPermissions(msg) {
    if (msg.participant === this.identity) {
      const before = this.me.permissions;
      this.me.permissions = { ...before, ...msg.permissions };
      if (before.publish && !this.me.permissions.publish) this.closePublisher();
      if (!before.publish && this.me.permissions.publish && this.local.stream) this.startPublishing();
      this.emit('change');
      return;
    }
    const p = this.participants.get(msg.participant);
    if (p) p.permissions = { ...p.permissions, ...msg.permissions };
  }

  onQuality(msg) {
    for (const q of msg.participants || []) {
      if (q.identity === this.identity) {
        this.emit('quality', { identity: q.identity, quality: q });
        continue;
      }
      const p = this.participants.get(q.identity);
      if (!p) continue;
      p.quality = { loss: q.loss, rtt_ms: q.rtt_ms, bitrate_kbps: q.bitrate_kbps, rating: q.rating };
      this.emit('quality', { identity: p.identity, quality: p.quality });
    }
  }

  onRemoved(msg) {
    this.forgetResume();
    this.end('removed', { reason: msg.reason });
  }

  onError(msg) {
    this.errors.push({ code: msg.code, message: msg.message, at: Date.now() });
    if (this.pendingPublish && (msg.code === 'bad_sdp' || msg.code === 'not_allowed')) {
      this.pendingPublish.reject(new Error(msg.code));
      this.pendingPublish = null;
    }
    if ((this.state === 'joining' || this.state === 'reconnecting') && FATAL_ON_JOIN.includes(msg.code)) {
      if (msg.code === 'unauthorized') this.forgetResume();
      this.end('failed', { code: msg.code });
      return;
    }
    this.emit('error', { code: msg.code });
  }

  // ---- the data channel ------------------------------------------------------------------

  attachChannel(dc) {
    this.dc = dc;
    const update = () => {
      if (dc === this.dc) this.emit('change');
    };
    dc.onopen = update;
    dc.onclose = update;
    dc.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      const body = m && m.message;
      if (body && body.kind === 'chat' && typeof body.text === 'string') this.emit('chat', { from: m.from ?? null, text: body.text });
      else if ((m.from ?? null) === null && body && typeof body === 'object' && !Array.isArray(body)) this.emit('data', body);
    };
    update();
  }

  // Sends a chat line; false when the data channel is not open.
  sendChat(text) {
    if (this.channel !== 'open') return false;
    this.dc.send(JSON.stringify({ kind: 'chat', text }));
    return true;
  }

  // ---- publishing ------------------------------------------------------------------------

  startPublishing() {
    this.closePublisher();
    const stream = this.local.stream;
    const pc = this.peerConnection();
    this.pub = pc;
    pc.onicecandidate = (ev) => this.trickle(pc, 'publisher', ev.candidate);
    pc.onconnectionstatechange = () => this.watchIce(pc);
    const audio = stream.getAudioTracks()[0];
    const video = stream.getVideoTracks()[0];
    if (audio) this.tx.microphone = pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
    if (video) {
      const sendEncodings = this.simulcast ? CAMERA_LAYERS.map((l) => ({ ...l })) : [{ ...this.cameraEncoding }];
      this.tx.camera = pc.addTransceiver(video, { direction: 'sendonly', streams: [stream], sendEncodings });
      preferH264(this.tx.camera);
    }
    if (this.local.screen) this.addScreen(this.local.screen.getVideoTracks()[0]);
    this.emit('change');
    this.negotiatePublish();
  }

  // Changes how the single-encoding camera is sent ({maxBitrate, maxFramerate,
  // scaleResolutionDownBy}; what is left out goes back to the default), now when publishing and
  // on every later publish. A simulcast camera keeps its layers.
  async setCameraEncoding(encoding) {
    this.cameraEncoding = { maxBitrate: CAMERA_KBPS * 1000, ...encoding };
    if (this.simulcast) return;
    const sender = this.tx.camera && this.tx.camera.sender;
    if (!sender || !sender.track) return;
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) return; // not negotiated yet: sendEncodings apply
    const enc = params.encodings[0];
    for (const key of ['maxBitrate', 'maxFramerate', 'scaleResolutionDownBy']) {
      if (this.cameraEncoding[key] === undefined) delete enc[key]; else enc[key] = this.cameraEncoding[key];
    }
    if (enc.scaleResolutionDownBy === undefined) enc.scaleResolutionDownBy = 1;
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn('camera encoding not applied', e);
    }
  }

  addScreen(track) {
    if (this.tx.screen) {
      this.tx.screen.sender.replaceTrack(track);
      this.tx.screen.direction = 'sendonly';
    } else {
      this.tx.screen = this.pub.addTransceiver(track, { direction: 'sendonly', sendEncodings: [{ maxBitrate: SCREEN_KBPS * 1000 }] });
      preferH264(this.tx.screen);
    }
  }

  // One publish exchange at a time: a screen share started while the first `publish` is on
  // its way waits for its answer.
  negotiatePublish() {
    const pc = this.pub;
    this.pubQueue = this.pubQueue.then(async () => {
      if (pc !== this.pub) return;
      await pc.setLocalDescription(await pc.createOffer());
      const tracks = SOURCES.filter((s) => this.tx[s] && this.tx[s].direction === 'sendonly' && this.tx[s].mid !== null)
        .map((source) => ({ mid: this.tx[source].mid, source }));
      const answer = new Promise((resolve, reject) => {
        this.pendingPublish = { resolve, reject };
        this.later(() => reject(new Error('no publish_answer within 15 s')), 15000);
      });
      this.send({ type: 'publish', sdp: pc.localDescription.sdp, tracks });
      const msg = await answer;
      if (pc !== this.pub) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      this.published = new Set(tracks.map((x) => x.source));
      // Tell the server what is muted here when it thinks otherwise (a fresh track starts unmuted).
      for (const source of ['microphone', 'camera']) {
        const known = this.me.tracks.find((x) => x.source === source);
        if (this.published.has(source) && this.local.muted[source] !== !!(known && known.muted)) {
          this.sendMute(source);
        }
      }
      this.emit('change');
    }).catch((e) => {
      console.warn('publish failed', e);
      if (pc === this.pub) this.emit('error', { code: 'publish_failed' });
    });
  }

  // The server's `layers`: which encodings of one of our tracks nobody receives. Those stop
  // (encoder and uplink idle), every other one goes on. Applied after any publish exchange in
  // progress, so parameters are never changed halfway through a negotiation.
  onLayers(msg) {
    const own = this.me && this.me.tracks.find((x) => x.id === msg.track);
    if (!own || !Array.isArray(msg.paused)) return;
    const paused = new Set(msg.paused.filter((r) => typeof r === 'string'));
    this.paused[own.source] = paused;
    const pc = this.pub;
    this.pubQueue = this.pubQueue.then(async () => {
      const tx = this.tx[own.source];
      if (pc !== this.pub || !tx || this.paused[own.source] !== paused) return; // superseded
      const params = tx.sender.getParameters();
      let changed = false;
      for (const enc of params.encodings || []) {
        if (!enc.rid || enc.active === !paused.has(enc.rid)) continue;
        enc.active = !paused.has(enc.rid);
        changed = true;
      }
      if (changed) await tx.sender.setParameters(params);
    }).catch((e) => console.warn('layers not applied', e));
  }

  onPublishAnswer(msg) {
    if (this.pendingPublish) {
      this.pendingPublish.resolve(msg);
      this.pendingPublish = null;
    }
  }

  toggleMute(source) {
    this.applyMute(source, !this.local.muted[source]);
    if (this.published.has(source)) this.sendMute(source);
  }

  sendMute(source) {
    const muted = this.local.muted[source];
    this.send({ type: 'mute', source, muted });
    for (const track of this.me.tracks) if (track.source === source) track.muted = muted;
  }

  applyMute(source, muted) {
    this.local.muted[source] = muted;
    const kind = source === 'microphone' ? 'audio' : 'video';
    for (const track of this.local.stream ? this.local.stream.getTracks() : []) if (track.kind === kind) track.enabled = !muted;
    this.emit('change');
  }

  // Starts or stops sharing the screen; rejects when the browser gives no screen.
  async toggleScreen() {
    if (this.local.screen) {
      this.stopScreen();
      return;
    }
    if (!this.pub) return;
    // Slides change rarely: a few frames a second keep the text sharp on little bandwidth.
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { max: 5 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'detail';
    track.addEventListener('ended', () => {
      if (this.local.screen === stream) this.stopScreen();
    });
    this.local.screen = stream;
    this.addScreen(track);
    this.emit('change');
    this.negotiatePublish();
  }

  stopScreen() {
    const stream = this.local.screen;
    this.local.screen = null;
    for (const track of stream ? stream.getTracks() : []) track.stop();
    if (this.tx.screen && this.pub) {
      this.tx.screen.sender.replaceTrack(null);
      this.tx.screen.direction = 'inactive';
      this.negotiatePublish();
    }
    this.emit('change');
  }

  trickle(pc, target, candidate) {
    if (!candidate || !candidate.candidate) return;
    if (pc !== this.pub && pc !== this.sub) return;
    this.send({ type: 'candidate', target, candidate: candidate.toJSON() });
  }

  // A connection that lost ICE is rebuilt by rejoining with the resume credential.
  watchIce(pc) {
    if (pc.connectionState === 'failed' && (pc === this.pub || pc === this.sub) && this.state === 'joined' && this.ws) {
      console.warn('ICE failed; rejoining');
      this.ws.close();
    }
  }

  // ---- leaving and reconnecting ----------------------------------------------------------

  leave() {
    this.send({ type: 'leave' });
    this.forgetResume();
    const ws = this.ws;
    // The server closes the socket after `leave`; this only covers a server that does not.
    if (ws) setTimeout(() => ws.close(), 2000);
    this.end('left');
  }

  onSocketClosed() {
    clearInterval(this.pingTimer);
    if (['joined', 'joining', 'reconnecting'].includes(this.state)) this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (!this.reconnect) {
      this.reconnect = { started: Date.now(), attempt: 0 };
      this.onlineRetry = () => {
        if (this.state === 'reconnecting' && this.reconnect) {
          clearTimeout(this.reconnect.timer);
          this.connect();
        }
      };
      window.addEventListener('online', this.onlineRetry, { once: true });
    }
    const r = this.reconnect;
    const left = RECONNECT_BUDGET_MS - (Date.now() - r.started);
    const delay = Math.min(1000 * 2 ** r.attempt, left);
    r.attempt += 1;
    if (delay < 500) {
      this.reconnect = null;
      this.end('disconnected');
      return;
    }
    this.setState('reconnecting');
    r.timer = this.later(() => this.connect(), delay);
  }

  closePublisher() {
    if (this.pendingPublish) {
      this.pendingPublish.reject(new Error('publisher closed'));
      this.pendingPublish = null;
    }
    if (this.pub) this.pub.close();
    this.pub = null;
    this.tx = {};
    this.paused = {};
    this.published = new Set();
  }

  closeConnections() {
    this.closePublisher();
    if (this.sub) this.sub.close();
    this.sub = null;
    this.dc = null;
  }

  teardown() {
    this.closeConnections();
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    clearInterval(this.pingTimer);
    clearInterval(this.usageTimer);
    this.usageTimer = null;
    this.stopLocal();
  }

  // Closes everything, the socket too, without telling the server (the page is going away).
  close() {
    this.teardown();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  // ---- receive budget and data used ------------------------------------------------------

  setAudioOnly(on) {
    if (on === this.audioOnly) return;
    this.audioOnly = on;
    this.emit('reception', on);
  }

  // Caps what the server sends us (kbit/s, null for no cap), remembered on this device.
  setBudget(kbps) {
    this.budget = saveBudget(kbps);
    if (this.state === 'joined') this.send({ type: 'budget', kbps: this.budget });
  }

  get dataUsed() {
    return this.usage.bytes.reduce((a, b) => a + b, 0);
  }

  async sampleUsage() {
    const before = this.dataUsed;
    const main = this.sub || this.pub;
    if (main) {
      const path = await connectionPath(main).catch(() => null);
      if (path && path !== this.path) {
        this.path = path;
        this.emit('path', path);
      }
    }
    await Promise.all([this.pub, this.sub].filter(Boolean).map(async (pc) => {
      let bytes;
      try {
        bytes = await connectionBytes(pc);
      } catch {
        return; // closed meanwhile: its last sample stands
      }
      const u = this.usage;
      if (!u.slot.has(pc)) u.slot.set(pc, u.bytes.push(0) - 1);
      const i = u.slot.get(pc);
      u.bytes[i] = Math.max(u.bytes[i], bytes);
    }));
    if (this.dataUsed !== before) this.emit('usage', this.dataUsed);
  }

  // What the publisher connection sends, per outgoing stream (a simulcast camera has one per
  // rid): its counters and whether its encoding is active.
  async outboundStats() {
    if (!this.pub) return [];
    const out = [];
    const report = await this.pub.getStats();
    const encodings = (this.tx.camera && this.tx.camera.sender.getParameters().encodings) || [];
    for (const s of report.values()) {
      if (s.type !== 'outbound-rtp') continue;
      const source = SOURCES.find((x) => this.tx[x] && this.tx[x].mid === s.mid) || null;
      const enc = source === 'camera' ? encodings.find((e) => (e.rid || null) === (s.rid || null)) : null;
      out.push({
        kind: s.kind, source, rid: s.rid || null, active: enc ? enc.active !== false : null, bytesSent: s.bytesSent,
        framesEncoded: s.framesEncoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesPerSecond: s.framesPerSecond,
        targetBitrate: s.targetBitrate, encoder: s.encoderImplementation, limitation: s.qualityLimitationReason, timestamp: s.timestamp,
        retransmittedBytesSent: s.retransmittedBytesSent, keyFramesEncoded: s.keyFramesEncoded, packetsSent: s.packetsSent,
      });
    }
    return out;
  }

  // Inbound video per remote track, from the subscriber connection's statistics.
  async inboundStats() {
    if (!this.sub) return [];
    const out = [];
    const report = await this.sub.getStats();
    for (const s of report.values()) {
      if (s.type !== 'inbound-rtp') continue;
      const trackId = s.mid !== undefined ? this.mids[s.mid] : undefined;
      let owner = null;
      for (const p of this.participants.values()) if (p.tracks.some((x) => x.id === trackId)) owner = p.identity;
      out.push({
        kind: s.kind, mid: s.mid, trackId, owner, framesDecoded: s.framesDecoded, packetsReceived: s.packetsReceived,
        packetsLost: s.packetsLost, bytesReceived: s.bytesReceived, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
        timestamp: s.timestamp,
      });
    }
    return out;
  }
}
