// Plays a recording in noVNC's own playback page (tests/vnc_playback.html of noVNC 1.3.0,
// vendored unmodified in third_party/novnc-playback) in Debian's headless Chromium, at
// full speed (perftest mode, one iteration), and writes the canvas as it was when the
// player finished. Usage:
//   node novnc_playback.mjs NOVNC_DIR PLAYBACK_TESTS_DIR RECORDING CANVAS_PNG SCREENSHOT_PNG
//
// The page's layout is served from disk by playwright (no HTTP server, no port): /core,
// /app, /vendor from NOVNC_DIR (Debian's /usr/share/novnc), /tests from
// PLAYBACK_TESTS_DIR, /recordings/<name> the recording, which the page loads as a script.
//
// The last frame: when the recording ends, noVNC's player (playback.js `_finish`) waits
// until the display has drawn everything, then closes its fake websocket; the RFB object
// then removes its screen (a div holding the canvas) from #VNC_screen. A MutationObserver
// installed from here (the vendored files are not touched) reads that canvas the moment
// it is removed: nothing draws on it after the close, so it holds exactly the screen the
// player ended on.
import { run } from './chromium.mjs';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';

const [, , novnc, tests, recording, canvasOut, shotOut] = process.argv;
const origin = 'http://novnc-playback.localhost';
const name = basename(recording);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
  '.png': 'image/png', '.svg': 'image/svg+xml', '.json': 'application/json' };

// A path of the page's origin → the file it is.
function file(path) {
  const p = decodeURIComponent(path);
  if (p === `/recordings/${name}`) return recording;
  for (const dir of ['core', 'app', 'vendor']) {
    if (p.startsWith(`/${dir}/`)) return join(novnc, p.slice(1));
  }
  if (p.startsWith('/tests/')) return join(tests, p.slice('/tests/'.length));
  return null;
}

await run({ width: 1280, height: 900 }, async (page, logs) => {
  const served = [];
  await page.route(`${origin}/**`, async (route) => {
    const url = new URL(route.request().url());
    const f = file(url.pathname);
    if (f && !f.includes('..')) {
      try {
        const body = readFileSync(f);
        served.push(url.pathname);
        await route.fulfill({ status: 200, body, contentType: types[extname(f)] || 'application/octet-stream' });
        return;
      } catch (e) {
        logs.push(`route: ${url.pathname}: ${e}`);
      }
    }
    await route.fulfill({ status: 404, body: 'not found' });
  });
  page.on('pageerror', (e) => logs.push(`pageerror: ${e}`));
  await page.goto(`${origin}/tests/vnc_playback.html?data=${encodeURIComponent(name)}&iterations=1`);
  const messages = () => page.evaluate(() => document.getElementById('messages').value);
  try {
    await page.waitForFunction(() => {
      const m = document.getElementById('messages').value;
      return m.includes('Ready') || m.includes('Error loading');
    }, null, { timeout: 60000, polling: 100 });
  } catch (e) {
    throw new Error(`the page did not load the recording: ${e}; messages: ${await messages()}; console: ${logs.join(' | ')}`);
  }
  const loaded = await messages();
  if (!loaded.includes('Ready')) throw new Error(`the page could not load the recording: ${loaded}`);
  // Catch the canvas as the player's RFB removes it at the end (see above).
  await page.evaluate(() => {
    window.tcvncFinal = null;
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.removedNodes) {
          const c = n.tagName === 'CANVAS' ? n : n.querySelector?.('canvas');
          if (c && !window.tcvncFinal) {
            window.tcvncFinal = { png: c.toDataURL('image/png'), size: [c.width, c.height] };
          }
        }
      }
    }).observe(document.getElementById('VNC_screen'), { childList: true, subtree: true });
  });
  await page.click('#startButton');
  try {
    await page.waitForFunction(() => {
      const m = document.getElementById('messages').value;
      return m.includes('iterations took') || m.includes('noVNC sent disconnected');
    }, null, { timeout: 120000, polling: 100 });
  } catch (e) {
    throw new Error(`the playback did not finish: ${e}; messages: ${await messages()}; console: ${logs.join(' | ')}`);
  }
  const said = await messages();
  if (said.includes('noVNC sent disconnected')) {
    throw new Error(`noVNC failed during the playback: ${said}; console: ${logs.join(' | ')}`);
  }
  const final = await page.evaluate(() => window.tcvncFinal);
  if (!final) throw new Error(`no canvas was removed at the end; messages: ${said}`);
  writeFileSync(canvasOut, Buffer.from(final.png.split(',')[1], 'base64'));
  await page.screenshot({ path: shotOut });
  const loadedFrames = Number((said.match(/Loaded (\d+) frames/) || [])[1]);
  return { messages: said.split('\n').filter((l) => l), loaded_frames: loadedFrames,
    size: final.size, served: served.length, errors: logs.filter((l) => l.startsWith('pageerror') || l.startsWith('error')) };
});
