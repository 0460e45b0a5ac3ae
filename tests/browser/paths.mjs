// Which network path a WHIP publisher and a WHEP player in Chromium take to the media server,
// with the ICE servers from the join response:
// - PATH_KIND=relay: both forced to `iceTransportPolicy: "relay"` connect through TURN (coturn) and
//   video flows; with EXPIRED_ICE, an expired credential gathers no relay candidate (401).
// - PATH_KIND=tcp: the server announces only a passive TCP candidate; both connect over ICE-TCP.
//
//   BASE_URL=http://127.0.0.1:PORT USERNAME=... PASSWORD=... PATH_KIND=relay|tcp
//   [EXPIRED_ICE='[{"urls":[...],...}]'] node paths.mjs
import { launchBrowser, check } from './chromium.mjs';

const base = process.env.BASE_URL;
const path = process.env.PATH_KIND;
const expired = JSON.parse(process.env.EXPIRED_ICE || 'null');
check(base && process.env.USERNAME && process.env.PASSWORD && ['relay', 'tcp'].includes(path),
  'BASE_URL, USERNAME, PASSWORD and PATH_KIND (relay or tcp) must be set');
const policy = path === 'relay' ? 'relay' : 'all';

const browser = await launchBrowser();
try {
  const page = await (await browser.newContext()).newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`page: ${m.text()}`); });
  await page.goto(`${base}/healthz`);

  const result = await page.evaluate(async ({ username, password, expired, policy }) => {
    const json = async (res) => { const b = await res.json().catch(() => null); if (!res.ok) throw new Error(`${res.status} ${JSON.stringify(b)}`); return b; };
    const post = (path, body, token) => fetch(path, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    await json(await post('/api/v1/auth/login', { username, password }));
    const mint = async (identity, publish) => json(await post('/api/v1/tokens/join',
      { room: 'relay-room', identity, role: publish ? 'teacher' : 'student', can_publish: publish }));
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const until = async (what, fn, ms = 20000) => {
      const end = Date.now() + ms;
      for (;;) { const v = await fn(); if (v) return v; if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(200); }
    };
    const gathered = (pc) => until('ICE gathering', () => pc.iceGatheringState === 'complete');
    // The local candidate of the pair ICE selected, from getStats.
    const selectedLocal = async (pc) => {
      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = stats.get(s.selectedCandidatePairId);
          return stats.get(pair.localCandidateId);
        }
      }
      return null;
    };
    // Offers (after gathering), posts to WHIP/WHEP and applies the answer; the Link headers too.
    const negotiate = async (pc, path, token) => {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` }, body: pc.localDescription.sdp });
      if (res.status !== 201) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      return res.headers.get('link') || '';
    };

    const out = {};
    const pub = await mint('relay-pub', true);
    out.iceServers = pub.ice_servers;
    const pc1 = new RTCPeerConnection({ iceServers: pub.ice_servers, iceTransportPolicy: policy });
    const cam = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 } });
    pc1.addTransceiver(cam.getVideoTracks()[0], { direction: 'sendonly' });
    out.whipLink = await negotiate(pc1, '/whip/relay-room', pub.token);
    await until('the WHIP publisher connects', () => pc1.connectionState === 'connected');
    const l1 = await selectedLocal(pc1);
    out.publisher = l1 && { type: l1.candidateType, protocol: l1.protocol, relayProtocol: l1.relayProtocol };

    const sub = await mint('relay-sub', false);
    const pc2 = new RTCPeerConnection({ iceServers: sub.ice_servers, iceTransportPolicy: policy });
    pc2.addTransceiver('video', { direction: 'recvonly' });
    let frames = 0;
    await until('the WHEP player is answered', async () => {
      try { await negotiate(pc2, '/whep/relay-room', sub.token); return true; } catch (e) { if (String(e).includes('404')) return false; throw e; }
    });
    await until('the WHEP player connects', () => pc2.connectionState === 'connected');
    const decoded = async () => { let n = 0; (await pc2.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; }); return n; };
    const first = await until('the player decodes frames', async () => { const n = await decoded(); return n > 0 && n; });
    frames = await until('more frames arrive', async () => { const n = await decoded(); return n >= first + 10 && n; });
    out.framesDecoded = [first, frames];
    const l2 = await selectedLocal(pc2);
    out.player = l2 && { type: l2.candidateType, protocol: l2.protocol, relayProtocol: l2.relayProtocol };
    // The pre-join network check (a data-only connection to /probe/{room}) finds the same path.
    const probe = new RTCPeerConnection({ iceServers: pub.ice_servers, iceTransportPolicy: policy });
    probe.createDataChannel('probe');
    const probeLink = await negotiate(probe, '/probe/relay-room', pub.token);
    await until('the network check connects', () => probe.connectionState === 'connected');
    const lp = await selectedLocal(probe);
    out.probe = lp && { type: lp.candidateType, protocol: lp.protocol, link: probeLink.includes('rel="ice-server"') };
    probe.close();

    // The admin view says how each participant's media travels.
    out.adminPaths = await until('the admin view shows both paths', async () => {
      const rooms = await json(await fetch('/api/v1/rooms', { credentials: 'same-origin' }));
      const room = (rooms.rooms || rooms).find((r) => r.name === 'relay-room');
      const paths = Object.fromEntries(((room && room.participants) || []).map((p) => [p.identity, p.path]));
      return paths['relay-pub'] && paths['relay-sub'] && paths;
    });
    pc1.close(); pc2.close(); cam.getTracks().forEach((t) => t.stop());
    if (!expired) return out;

    // An expired credential: no relay candidate, and the TURN server's refusal is reported.
    const pc3 = new RTCPeerConnection({ iceServers: expired, iceTransportPolicy: 'relay' });
    const errors = [];
    const candidates = [];
    pc3.onicecandidateerror = (e) => errors.push(e.errorCode);
    pc3.onicecandidate = (e) => { if (e.candidate && e.candidate.candidate) candidates.push(e.candidate.candidate); };
    pc3.createDataChannel('probe');
    await pc3.setLocalDescription(await pc3.createOffer());
    await gathered(pc3);
    out.expired = { errors, candidates };
    pc3.close();
    return out;
  }, { username: process.env.USERNAME, password: process.env.PASSWORD, expired, policy });

  const want = path === 'relay' ? 'turn' : 'tcp';
  const probed = result.probe && (result.probe.type === 'relay' ? 'turn' : result.probe.protocol);
  check(probed === want, `the pre-join network check connects over ${want}: ${JSON.stringify(result.probe)}`);
  console.log(`ok: the network check found ${probed}`);
  check(result.adminPaths['relay-pub'] === want && result.adminPaths['relay-sub'] === want,
    `the admin view shows the ${want} path for both: ${JSON.stringify(result.adminPaths)}`);
  console.log(`ok: the admin view shows ${JSON.stringify(result.adminPaths)}`);
  if (path === 'relay') {
    const turn = (result.iceServers || []).find((s) => s.urls.some((u) => u.startsWith('turn:')));
    check(turn && turn.username && turn.credential, `the join response carries TURN credentials: ${JSON.stringify(result.iceServers)}`);
    check(/rel="ice-server"/.test(result.whipLink) && result.whipLink.includes('username='), `the WHIP answer has ice-server Link headers: ${result.whipLink}`);
    check(result.publisher && result.publisher.type === 'relay', `the publisher's selected pair is relayed: ${JSON.stringify(result.publisher)}`);
    check(result.player && result.player.type === 'relay', `the player's selected pair is relayed: ${JSON.stringify(result.player)}`);
    console.log(`ok: relay-only publisher (${result.publisher.relayProtocol}) and player (${result.player.relayProtocol}) connected through TURN; frames decoded ${result.framesDecoded.join(' -> ')}`);
  } else {
    check(result.publisher && result.publisher.protocol === 'tcp', `the publisher's selected pair is TCP: ${JSON.stringify(result.publisher)}`);
    check(result.player && result.player.protocol === 'tcp', `the player's selected pair is TCP: ${JSON.stringify(result.player)}`);
    console.log(`ok: publisher and player connected over ICE-TCP; frames decoded ${result.framesDecoded.join(' -> ')}`);
  }
  if (expired) {
    check(result.expired.candidates.length === 0, `an expired credential gathers no relay candidate: ${result.expired.candidates}`);
    check(result.expired.errors.includes(401), `coturn refuses the expired credential with 401: ${JSON.stringify(result.expired.errors)}`);
    console.log(`ok: the expired credential was refused (${JSON.stringify(result.expired.errors)})`);
  }
} finally {
  await browser.close();
}
