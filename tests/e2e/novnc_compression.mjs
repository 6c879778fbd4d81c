// noVNC's own page (vnc.html) in headless Chromium, its compression slider moved by the
// test through stdin as a user moves it (the settings panel's range input and its
// `change` event: noVNC then sends SetEncodings with the new compress-level
// pseudo-encoding, mid-session). Every message the page sends is recorded
// (`recordSends`), so the test sees what noVNC told the server.
//
// Commands, one a line, each answered with one JSON line:
//   level N       -> the slider set to N; {"ok": true, "level": N, "status"} once the page
//                    has sent a SetEncodings with compress level N (-256 + N)
//   canvas FILE   -> once noVNC has sized its canvas to the screen, the canvas's pixels
//                    written to FILE (PNG); {"ok": true, "status", "size": [w, h]}
//                    (noVNC's status line, "Connected …" while it is)
// Usage: node novnc_compression.mjs URL
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import { clientMessages, novncStatus, recordSends, run } from './chromium.mjs';

const [, , url] = process.argv;
const COMPRESS_LEVEL_0 = -256;

await run({ width: 1024, height: 640 }, async (page, logs) => {
  await page.addInitScript(recordSends);
  await page.goto(url);
  const say = (o) => console.log(JSON.stringify({ ok: true, ...o }));
  const levelsSent = async () => clientMessages(await page.evaluate(() => window.__sent))
    .filter((m) => m.kind === 'set_encodings')
    .map((m) => m.encodings.filter((e) => e >= COMPRESS_LEVEL_0 && e <= COMPRESS_LEVEL_0 + 9)
      .map((e) => e - COMPRESS_LEVEL_0));
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, arg] = line.split(' ');
    if (cmd === 'level') {
      const level = Number(arg);
      const before = (await levelsSent()).length;
      await page.evaluate((v) => {
        const slider = document.getElementById('noVNC_setting_compression');
        if (!slider) throw new Error('noVNC page without a compression slider');
        slider.value = String(v);
        slider.dispatchEvent(new Event('change'));
      }, level);
      const deadline = Date.now() + 10000;
      for (;;) {
        const sent = await levelsSent();
        if (sent.length > before && sent[sent.length - 1].includes(level)) break;
        if (Date.now() > deadline) {
          throw new Error(`no SetEncodings with compress level ${level}: ${JSON.stringify(sent)}; console: ${logs.join(' | ')}`);
        }
        await page.waitForTimeout(50);
      }
      say({ level, status: await novncStatus(page) });
    } else if (cmd === 'canvas') {
      // noVNC makes its canvas the screen's size once connected.
      await page.waitForFunction(() => {
        const c = document.querySelector('canvas');
        return c && c.width > 100;
      }, null, { timeout: 30000, polling: 100 }).catch(async (e) => {
        throw new Error(`no canvas: ${e}; status ${await novncStatus(page)}; console: ${logs.join(' | ')}`);
      });
      const got = await page.evaluate(() => {
        const c = document.querySelector('canvas');
        return c && c.width > 0 ? [c.toDataURL('image/png'), c.width, c.height] : null;
      });
      if (!got) throw new Error(`no canvas; status ${await novncStatus(page)}; console: ${logs.join(' | ')}`);
      writeFileSync(arg, Buffer.from(got[0].split(',')[1], 'base64'));
      say({ status: await novncStatus(page), size: [got[1], got[2]], console: logs.slice(-5) });
    } else {
      throw new Error(`unknown command ${line}`);
    }
  }
  return null;
});
