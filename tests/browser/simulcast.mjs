// Chromium as a simulcast publisher, on an unshaped loopback link: the room page publishes a
// 1280×720 fake camera as three layers by rid (q, h, f) and two viewers — each in its own browser
// context, neither publishing — pick layers with the protocol's `video_quality` frames; one also
// sends a `budget`, the other gets the top layer on the server's bandwidth estimate alone. Every
// layer somebody receives is sent; the layers nobody receives are paused by the server's `layers`
// frame (their bytesSent stops growing) and resumed when somebody wants them. A viewer that caps
// its reception at 64 kbit/s in the page gets audio only, and its page says so, until it lifts
// the cap. The publisher is also asked for speech-sized Opus with DTX in the server's answer.
//
//   BASE_URL=http://127.0.0.1:PORT ROOM=… TOKEN_PUB=<teacher> TOKEN_TOP=<viewer> TOKEN_MID=<viewer>
//   [SCREENSHOT_DIR=...] node simulcast.mjs
//
// Every wait is bounded and fails saying what did not happen; nothing asserts how fast it was.
// The figures (bytes per layer over each sample window, seconds until a pause was seen) are
// printed at the end.
import { launchBrowser, check } from './chromium.mjs';

const env = (name) => {
  const v = process.env[name];
  check(v, `${name} must be set`);
  return v;
};
const base = env('BASE_URL');
const room = env('ROOM');
const tokens = { pub: env('TOKEN_PUB'), top: env('TOKEN_TOP'), mid: env('TOKEN_MID') };
const shots = process.env.SCREENSHOT_DIR;
const RIDS = ['q', 'h', 'f'];
const SAMPLE_MS = 3000;

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const log = [];
const note = (line) => log.push(`[${elapsed()}] ${line}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const consoleErrors = [];
// The server frames each page received, as the wire carried them (type and the fields used here).
const received = new Map();
function watch(page, name) {
  const frames = [];
  received.set(page, frames);
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    try {
      const m = JSON.parse(payload);
      frames.push({ type: m.type, at: Date.now(), paused: m.paused, track: m.track, sdp: m.type === 'publish_answer' ? m.sdp : undefined });
    } catch { /* not JSON */ }
  }));
  page.on('console', (m) => {
    note(`${name} console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error') consoleErrors.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${name} page error: ${e}`));
  page.on('crash', () => consoleErrors.push(`${name} page crashed`));
  return page;
}

// What a page knows, for failure messages.
const pageState = (page) => page.evaluate(async () => {
  const r = window.tongxinRoom;
  return r && { state: r.state, paused: r.paused, errors: r.errors, events: r.events.slice(-10), inbound: await r.stats(), outbound: await r.outbound() };
}).catch((err) => String(err));

// Polls `fn(arg)` in the page (it may return a promise) every 250 ms until it is truthy;
// bounded, fails saying what did not happen.
async function waitUntil(page, what, fn, arg, ms = 30000) {
  const deadline = Date.now() + ms;
  while (!(await page.evaluate(fn, arg))) {
    if (Date.now() > deadline) check(false, `${what} (not within ${ms / 1000} s)\npage: ${JSON.stringify(await pageState(page))}`);
    await sleep(250);
  }
  note(`ok: ${what}`);
}

async function join(page, name, token) {
  await page.goto(`${base}/room/${room}#token=${token}`, { timeout: 30000 });
  await page.waitForSelector('#join:not([disabled])', { timeout: 30000 });
  await page.click('#join');
  await waitUntil(page, `${name} joined`, () => window.tongxinRoom.state === 'joined');
}

// The camera's outgoing streams by rid: {q: {bytesSent, frameWidth, active, …}, …}.
async function camera(page) {
  const out = await page.evaluate(() => window.tongxinRoom.outbound());
  return Object.fromEntries(out.filter((s) => s.source === 'camera').map((s) => [s.rid, s]));
}

// Two samples of the camera's streams SAMPLE_MS apart: bytes each rid sent in between.
async function window3(page) {
  const a = await camera(page);
  await sleep(SAMPLE_MS);
  const b = await camera(page);
  const grew = Object.fromEntries(RIDS.map((r) => [r, (b[r] && a[r]) ? b[r].bytesSent - a[r].bytesSent : null]));
  for (const r of RIDS) if (a[r] && b[r]) note(`  ${r}: +${b[r].bytesSent - a[r].bytesSent} B, +${b[r].retransmittedBytesSent - a[r].retransmittedBytesSent} B retransmitted, +${b[r].keyFramesEncoded - a[r].keyFramesEncoded} keyframes, +${b[r].packetsSent - a[r].packetsSent} packets, target ${b[r].targetBitrate}`);
  const seconds = (b.q && a.q) ? (b.q.timestamp - a.q.timestamp) / 1000 : SAMPLE_MS / 1000;
  return { grew, seconds, after: b };
}

const kbps = (bytes, seconds) => (bytes === null ? 'n/a' : `${((bytes * 8) / seconds / 1000).toFixed(0)} kbit/s`);
const size = (s) => (s && s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : 'no picture');
const describe = (w) => RIDS.map((r) => `${r}: ${w.grew[r]} B (${kbps(w.grew[r], w.seconds)}, ${size(w.after[r])})`).join(', ');

// Repeats sample windows (bounded) until `ok(window)` holds; returns that window.
async function windowUntil(page, what, ok, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const w = await window3(page);
    if (ok(w)) {
      note(`ok: ${what}: ${describe(w)} over ${w.seconds.toFixed(1)} s`);
      return w;
    }
    check(Date.now() < deadline, `${what} (not within ${ms / 1000} s): last window ${describe(w)}; paused ${JSON.stringify(await page.evaluate(() => window.tongxinRoom.paused))}`);
  }
}

// The camera track id of `identity` as a viewer's page knows it.
const cameraTrack = (page, identity) => page.evaluate((id) => {
  const p = window.tongxinRoom.participants[id];
  const t = p && p.tracks.find((x) => x.source === 'camera');
  return t ? t.id : null;
}, identity);

// A viewer decodes more frames of `track` than at its previous poll, `min` to `max` pixels
// wide: the layer it gets.
async function viewerSees(page, name, what, want, ms = 30000) {
  await waitUntil(page, `${name} ${what}`, async (p) => {
    const s = (await window.tongxinRoom.stats()).find((x) => x.kind === 'video' && x.trackId === p.track);
    if (!s || !s.frameWidth) return false;
    window.lastDecoded = window.lastDecoded || {};
    const before = window.lastDecoded[p.track];
    window.lastDecoded[p.track] = s.framesDecoded;
    return before !== undefined && s.framesDecoded > before && s.frameWidth >= p.min && s.frameWidth <= p.max;
  }, want, ms);
  const s = (await page.evaluate(() => window.tongxinRoom.stats())).find((x) => x.trackId === want.track);
  note(`${name} decodes ${s.frameWidth}×${s.frameHeight} (${s.framesDecoded} frames)`);
}

// The `layers` frames the publisher page received since `from` (ms since the epoch).
const layersSince = (page, from) => received.get(page).filter((f) => f.type === 'layers' && f.at >= from);

// Fake camera at 15 fps; the page asks it for 1280×720.
const browser = await launchBrowser(['--use-fake-device-for-media-stream=fps=15']);
try {
  const pub = watch(await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage(), 'teacher');
  const top = watch(await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage(), 'viewer-top');
  const mid = watch(await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage(), 'viewer-mid');

  // 1. The viewers join first, then the teacher publishes.
  await join(top, 'viewer-top', tokens.top);
  await join(mid, 'viewer-mid', tokens.mid);
  await join(pub, 'teacher', tokens.pub);
  const teacher = await pub.evaluate(() => window.tongxinRoom.identity);
  await waitUntil(pub, 'the teacher publishes camera and microphone',
    () => ['camera', 'microphone'].every((s) => window.tongxinRoom.local.published.includes(s)));

  // The camera is 1280×720, sent as three encodings by rid; audio is Opus with DTX at 24 kbit/s.
  const local = await pub.evaluate(() => window.tongxinRoom.local.tracks.find((x) => x.kind === 'video'));
  note(`teacher camera: ${JSON.stringify(local)}`);
  check(local && local.width === 1280 && local.height === 720, `the room page opens the camera at 1280×720: ${JSON.stringify(local)}`);
  const answer = received.get(pub).find((f) => f.type === 'publish_answer');
  check(answer, 'the teacher got a publish_answer');
  const fmtp = answer.sdp.split(/\r?\n/).filter((l) => l.startsWith('a=fmtp:') || l.startsWith('a=simulcast') || l.startsWith('a=rid') || /^a=rtpmap:\d+ (opus|H264|VP8)/i.test(l));
  note(`publish_answer lines: ${JSON.stringify(fmtp)}`);
  check(/a=fmtp:\d+ .*usedtx=1/.test(answer.sdp) && /maxaveragebitrate=24000/.test(answer.sdp), 'the answer asks the page for Opus with DTX at 24 kbit/s');
  check(/a=simulcast:recv q;h;f/.test(answer.sdp), `the server accepts the three rids in its answer: ${JSON.stringify(fmtp)}`);

  // 2. One viewer takes the top layer, the other the middle one: all three layers are sent.
  const track = await cameraTrack(top, teacher);
  check(track, 'the viewers know the teacher\'s camera track');
  for (const page of [top, mid]) {
    await waitUntil(page, 'the viewer receives the teacher\'s camera', (id) => window.tongxinRoom.stats().then((s) => s.some((x) => x.trackId === id && x.framesDecoded > 0)), track);
  }
  // viewer-top sets no budget: the server's estimate of its loopback link (str0m's BWE over the
  // page's TWCC feedback) is what lets it have the top layer.
  await top.evaluate((id) => {
    window.tongxinRoom.send({ type: 'video_quality', track: id, max: 'high' });
  }, track);
  await mid.evaluate((id) => {
    window.tongxinRoom.send({ type: 'budget', kbps: 100000 });
    window.tongxinRoom.send({ type: 'video_quality', track: id, max: 'medium' });
  }, track);
  const all = await windowUntil(pub, 'each of the three layers is sent (bytesSent grows for q, h and f)',
    (w) => RIDS.every((r) => w.grew[r] > 0));
  const out = await camera(pub);
  note(`teacher camera streams: ${JSON.stringify(Object.values(out).map((s) => ({ rid: s.rid, w: s.frameWidth, h: s.frameHeight, fps: s.framesPerSecond, active: s.active, encoder: s.encoder, limitation: s.limitation })))}`);
  check(out.q.frameWidth < out.h.frameWidth && out.h.frameWidth < out.f.frameWidth,
    `the layers are three sizes, q smallest: ${RIDS.map((r) => out[r].frameWidth).join(' < ')}`);
  // Widths are compared, not fixed: Chromium may scale all layers down when its CPU is short.
  await viewerSees(top, 'viewer-top', 'gets the top layer (wider than the middle one)', { track, min: out.h.frameWidth + 1, max: 4096 });
  await viewerSees(mid, 'viewer-mid', 'gets the middle layer', { track, min: out.q.frameWidth + 1, max: out.f.frameWidth - 1 });
  const audio = (await pub.evaluate(() => window.tongxinRoom.outbound())).find((s) => s.kind === 'audio');
  note(`teacher audio: ${JSON.stringify(audio)}`);
  check(audio && !(audio.targetBitrate > 24000), `the microphone's encoder follows the answer's 24 kbit/s: ${JSON.stringify(audio)}`);
  if (shots) await pub.screenshot({ path: `${shots}/simulcast-teacher.png` });

  // 3. Both viewers want a small tile: only q is received, so h and f are paused after a while.
  const lowered = Date.now();
  for (const page of [top, mid]) await page.evaluate((id) => window.tongxinRoom.send({ type: 'video_quality', track: id, max: 'low' }), track);
  await waitUntil(pub, 'the server asks the teacher to pause h and f, and the page does',
    () => {
      const p = window.tongxinRoom.paused.camera || [];
      return p.includes('h') && p.includes('f') && !p.includes('q');
    }, null, 30000);
  const pausedAfter = (layersSince(pub, lowered).find((f) => f.paused.includes('h') && f.paused.includes('f')).at - lowered) / 1000;
  note(`the pause came ${pausedAfter.toFixed(1)} s after the viewers asked for low`);
  await waitUntil(pub, 'the paused encodings are inactive', async () => {
    const s = await window.tongxinRoom.outbound();
    return ['h', 'f'].every((r) => s.some((x) => x.rid === r && x.active === false)) && s.some((x) => x.rid === 'q' && x.active);
  });
  // A sender may still be flushing a frame when it stops: the window starts after a short grace.
  await sleep(1000);
  const paused = await windowUntil(pub, 'h and f stop growing while q goes on',
    (w) => w.grew.q > 0 && w.grew.h === 0 && w.grew.f === 0, 15000);
  await viewerSees(top, 'viewer-top', 'still sees the teacher, on the lowest layer', { track, min: 1, max: out.q.frameWidth });

  // 4. One viewer wants the top layer again: f is resumed at once (h stays paused).
  const raised = Date.now();
  await top.evaluate((id) => window.tongxinRoom.send({ type: 'video_quality', track: id, max: 'high' }), track);
  await waitUntil(pub, 'the server resumes f, h stays paused',
    () => JSON.stringify(window.tongxinRoom.paused.camera) === JSON.stringify(['h']), null, 15000);
  const resumedAfter = (layersSince(pub, raised).find((f) => JSON.stringify(f.paused) === '["h"]').at - raised) / 1000;
  note(`f resumed ${resumedAfter.toFixed(1)} s after a viewer asked for high`);
  const inbound = async (page) => (await page.evaluate(() => window.tongxinRoom.stats())).find((x) => x.trackId === track);
  const midBefore = await inbound(mid);
  const resumed = await windowUntil(pub, 'f grows again, h stays still',
    (w) => w.grew.f > 0 && w.grew.h === 0, 20000);
  const midAfter = await inbound(mid);
  const forwardedQ = (midAfter.bytesReceived - midBefore.bytesReceived) * 8 / ((midAfter.timestamp - midBefore.timestamp) / 1000) / 1000;
  // q's bytesSent also counts the padding Chromium sends to hold its estimate for the top layer;
  // what reaches a viewer is the layer itself, which must fit a 150 kbit/s link beside the audio.
  note(`viewer-mid receives q at ${forwardedQ.toFixed(0)} kbit/s (${midAfter.frameWidth}×${midAfter.frameHeight}) while q's bytesSent says ${kbps(resumed.grew.q, resumed.seconds)}`);
  check(forwardedQ > 0 && forwardedQ <= 80, `the lowest layer stays near its 56 kbit/s cap: ${forwardedQ.toFixed(0)} kbit/s`);
  await viewerSees(top, 'viewer-top', 'gets the top layer again', { track, min: out.h.frameWidth + 1, max: 4096 });

  // 5. viewer-mid caps what it receives at 64 kbit/s in the page: audio and the lowest layer no
  // longer fit, so the server stops its video and the page says so; the other viewer keeps the
  // top layer. Lifting the cap brings the video back and the notice goes.
  check(await mid.isHidden('#audio-only'), 'no audio-only notice while the video fits');
  const capped = Date.now();
  await mid.selectOption('#budget', '64');
  await mid.waitForSelector('#audio-only', { state: 'visible', timeout: 20000 });
  const offAfter = (Date.now() - capped) / 1000;
  note(`viewer-mid: audio only ${offAfter.toFixed(1)} s after choosing 64 kbit/s: "${await mid.textContent('#audio-only')}"`);
  await sleep(2500); // frames already on their way
  const frozen = await inbound(mid);
  await sleep(SAMPLE_MS);
  const stillFrozen = await inbound(mid);
  check(stillFrozen.framesDecoded === frozen.framesDecoded, `no video while audio only: ${frozen.framesDecoded} → ${stillFrozen.framesDecoded} frames`);
  const audioIn = async (page) => (await page.evaluate(() => window.tongxinRoom.stats())).find((x) => x.kind === 'audio');
  const a1 = await audioIn(mid);
  await sleep(2000);
  const a2 = await audioIn(mid);
  check(a2 && a1 && a2.bytesReceived > a1.bytesReceived, `audio goes on while the video is off: ${JSON.stringify([a1, a2])}`);
  await viewerSees(top, 'viewer-top', 'keeps the top layer meanwhile', { track, min: out.h.frameWidth + 1, max: 4096 });
  const lifted = Date.now();
  await mid.selectOption('#budget', '');
  await mid.waitForSelector('#audio-only', { state: 'hidden', timeout: 45000 });
  note(`viewer-mid: video back ${((Date.now() - lifted) / 1000).toFixed(1)} s after lifting the cap`);
  await viewerSees(mid, 'viewer-mid', 'decodes the teacher again', { track, min: 1, max: 4096 }, 20000);

  for (const [name, page] of [['teacher', pub], ['viewer-top', top], ['viewer-mid', mid]]) {
    const errors = await page.evaluate(() => window.tongxinRoom.errors);
    check(errors.length === 0, `the server answered ${name}'s frames with errors: ${JSON.stringify(errors)}`);
  }
  check(consoleErrors.length === 0, `browser console errors: ${JSON.stringify(consoleErrors)}`);
  console.log(log.join('\n'));
  console.log(`figures: all layers ${describe(all)}; paused after ${pausedAfter.toFixed(1)} s: ${describe(paused)}; `
    + `resumed after ${resumedAfter.toFixed(1)} s: ${describe(resumed)}`);
  console.log(`simulcast: ok in ${elapsed()}`);
} catch (e) {
  console.error(log.join('\n'));
  throw e;
} finally {
  await browser.close();
}
