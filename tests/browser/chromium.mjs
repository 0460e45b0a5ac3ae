// Launches Debian's Chromium for tests, with the flags that work on this kind of machine
// (../shared/PLATFORM-NOTES.md). Nothing here downloads a browser.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'tongxin-chromium-'));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    locale: 'zh-CN',
  });
}

// A whole browser (not a persistent context), for tests that need several isolated contexts —
// several origins and peers in one Chromium process. `extraArgs` are appended to CHROMIUM_ARGS
// (a later `--use-fake-device-for-media-stream=...` refines the fake camera).
export async function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

// Fails the process with a clear message when a condition does not hold.
export function check(cond, message) {
  if (!cond) {
    console.error(`FAIL: ${message}`);
    process.exitCode = 1;
    throw new Error(message);
  }
}
