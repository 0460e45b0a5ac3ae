// WHIP and WHEP with real Chromium peers. One browser, two isolated contexts on two origins:
// the publisher page publishes its fake camera (small, 15 fps) and microphone over WHIP; the
// player page, on another origin, plays the room over WHEP. The SFU's HTTP endpoint is a third
// origin, so both pages go through CORS. The pages (served by the Rust test) hold the WebRTC
// code; this script loads them, watches the player's getStats() until video frames are decoded
// and audio arrives, then ends both sessions with DELETE.
//
//   PUBLISH_PAGE=http://127.0.0.1:A/ PLAY_PAGE=http://127.0.0.1:B/ WHIP_URL=http://127.0.0.1:S/whip/room
//   WHEP_URL=http://127.0.0.1:S/whep/room PUBLISH_TOKEN=... PLAY_TOKEN=... node whip_whep.mjs
import { launchBrowser, check } from './chromium.mjs';

const env = (name) => {
  const v = process.env[name];
  check(v, `${name} must be set`);
  return v;
};
const publishPage = env('PUBLISH_PAGE');
const playPage = env('PLAY_PAGE');
const whipUrl = env('WHIP_URL');
const whepUrl = env('WHEP_URL');
const publishToken = env('PUBLISH_TOKEN');
const playToken = env('PLAY_TOKEN');

const origins = [publishPage, playPage, whipUrl].map((u) => new URL(u).origin);
check(new Set(origins).size === 3, `the publisher page, the player page and the SFU must be three origins: ${origins}`);
check(new URL(whipUrl).origin === new URL(whepUrl).origin, 'WHIP and WHEP are served by the same SFU');

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const log = [];
const note = (line) => {
  log.push(`[${elapsed()}] ${line}`);
};

// Collects what a page says, so a failure shows the browser's side of the story.
function watch(page, name) {
  const errors = [];
  page.on('console', (m) => {
    note(`${name} console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => {
    note(`${name} page error: ${e}`);
    errors.push(String(e));
  });
  page.on('crash', () => errors.push(`${name} page crashed`));
  return errors;
}

// Fails clearly when a step hangs (the pages bound their own waits; this is the backstop).
function within(ms, what, promise) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`FAIL: ${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// Awaits the page's `window.started` (its WHIP or WHEP set-up); a rejection becomes a clear failure.
async function started(page, name) {
  const r = await within(60000, `${name} set-up`, page.evaluate(() =>
    window.started.then((v) => ({ ok: true, v }), (e) => ({ ok: false, e: String(e && e.stack || e) }))));
  check(r.ok, `${name} set-up failed: ${r.e}`);
  return r.v;
}

const sample = (page) => within(10000, 'getStats()', page.evaluate(() => window.sample()));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Small and slow camera: two cores run an encoder, a decoder and the SFU at once.
const browser = await launchBrowser(['--use-fake-device-for-media-stream=fps=15']);
let publisher;
let player;
try {
  const pubCtx = await browser.newContext();
  publisher = await pubCtx.newPage();
  const pubErrors = watch(publisher, 'publisher');
  const pubUrl = new URL(publishPage);
  pubUrl.searchParams.set('whip', whipUrl);
  pubUrl.searchParams.set('token', publishToken);
  await publisher.goto(pubUrl.href, { timeout: 30000 });
  const pub = await started(publisher, 'publisher');
  note(`publisher up: session ${pub.session}, camera ${pub.camera.width}x${pub.camera.height}@${pub.camera.frameRate}, ` +
    `H.264 preferred: ${pub.h264}`);
  check(pub.session.startsWith(new URL(whipUrl).origin + '/whip/'), `the WHIP session URL is on the SFU: ${pub.session}`);

  const playCtx = await browser.newContext();
  player = await playCtx.newPage();
  const playErrors = watch(player, 'player');
  const playUrl = new URL(playPage);
  playUrl.searchParams.set('whep', whepUrl);
  playUrl.searchParams.set('token', playToken);
  await player.goto(playUrl.href, { timeout: 30000 });
  const play = await started(player, 'player');
  note(`player up: session ${play.session}`);
  check(play.session.startsWith(new URL(whepUrl).origin + '/whep/'), `the WHEP session URL is on the SFU: ${play.session}`);

  // Wait for decoded video and received audio, then for decoding to go on.
  let first;
  const deadline = Date.now() + 30000;
  for (;;) {
    const s = await sample(player);
    if (s.framesDecoded > 30 && s.audioPackets > 50) {
      first = s;
      break;
    }
    if (Date.now() > deadline) {
      const p = await sample(publisher);
      check(false, `the player did not get media within 30 s: player ${JSON.stringify(s)}; publisher ${JSON.stringify(p)}`);
    }
    await sleep(500);
  }
  note(`player: ${JSON.stringify(first)}`);
  await sleep(1500);
  const second = await sample(player);
  note(`player 1.5 s later: ${JSON.stringify(second)}`);
  check(second.framesDecoded > first.framesDecoded,
    `framesDecoded keeps rising (${first.framesDecoded} then ${second.framesDecoded})`);
  check(second.audioPackets > first.audioPackets,
    `audio packetsReceived keeps rising (${first.audioPackets} then ${second.audioPackets})`);
  check(second.width > 0 && second.height > 0, `decoded frames have a size (${second.width}x${second.height})`);
  const sent = await sample(publisher);
  note(`publisher: ${JSON.stringify(sent)}`);
  check(second.videoCodec && second.videoCodec === sent.videoCodec,
    `the player decodes the codec the publisher sends (${second.videoCodec} vs ${sent.videoCodec})`);
  // The publisher puts H.264 first and the SFU answers H.264 first (lessons and cheap phones
  // need it), so the whole path must be H.264 whenever this Chromium can encode it.
  if (pub.h264) {
    const answer = await publisher.evaluate(() => window.sdp.answer);
    const video = answer.split('m=video')[1] || '';
    const order = [...video.matchAll(/^a=rtpmap:(\d+) ([^\r\n]+)/gm)].map((m) => `${m[1]} ${m[2]}`).join(', ');
    check(sent.videoCodec === 'video/H264', `Chromium sends H.264 (sends ${sent.videoCodec}; the answer lists [${order}])`);
  }

  // End both sessions with the tokens that started them.
  const playEnd = await within(10000, 'DELETE of the WHEP session', player.evaluate(() => window.stop()));
  check(playEnd === 200, `DELETE of the WHEP session answered ${playEnd}`);
  const pubEnd = await within(10000, 'DELETE of the WHIP session', publisher.evaluate(() => window.stop()));
  check(pubEnd === 200, `DELETE of the WHIP session answered ${pubEnd}`);

  check(pubErrors.length === 0, `publisher page errors: ${JSON.stringify(pubErrors)}`);
  check(playErrors.length === 0, `player page errors: ${JSON.stringify(playErrors)}`);
  note('both sessions ended');
  console.log(log.join('\n'));
  console.log(`whip_whep: ok in ${elapsed()} (${second.videoCodec}, ${second.width}x${second.height}, ` +
    `${second.framesDecoded} frames decoded, ${second.audioPackets} audio packets)`);
} catch (e) {
  console.error(log.join('\n'));
  throw e;
} finally {
  await browser.close();
}
