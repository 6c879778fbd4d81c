// Two noVNC pages in one headless Chromium on one console, driven by the test through
// stdin: CONTROL_URL and VIEW_URL open the same console, the second asking tcvnc for the
// view-only role (`?view_only=1` in the websocket path; noVNC itself is not told, so it
// sends whatever it is given). Every message a page sends on its websocket is recorded
// (WebSocket.prototype.send wrapped before noVNC loads) and its key and pointer events
// are read back out of that RFB stream, in the form the simulator's input log uses.
//
// Commands, one a line, each answered with one JSON line:
//   ready               -> {"ok": true, "ready": true} once both canvases are drawn
//   input PAGE X Y TEXT -> PAGE (control or view) clicks its canvas at X,Y (framebuffer
//                          pixels) with playwright's mouse and types TEXT with its
//                          keyboard; {"ok": true, "page", "sent": [every key and pointer
//                          event the page has sent so far]}
// At stdin's end: writes PREFIX-control.png and PREFIX-view.png (page screenshots), exits.
// Usage: node novnc_share.mjs CONTROL_URL VIEW_URL PREFIX
import { createInterface } from 'node:readline';
import { clientMessages, novncStatus, recordSends, run } from './chromium.mjs';

const [, , controlUrl, viewUrl, prefix] = process.argv;

// Waits until noVNC has drawn the console's first full update (the test pattern's grey
// ramp ends in white at the bottom right).
async function drawn(page, logs) {
  try {
    await page.waitForFunction(() => {
      const c = document.querySelector('canvas');
      if (!c || c.width < 100) return false;
      const d = c.getContext('2d').getImageData(c.width - 10, c.height - 5, 1, 1).data;
      return d[0] > 200;
    }, null, { timeout: 30000, polling: 100 });
  } catch (e) {
    throw new Error(`canvas never drawn: ${e}; status ${await novncStatus(page)}; console: ${logs.join(' | ')}`);
  }
}

await run({ width: 1024, height: 640 }, async (control, controlLogs) => {
  // The view-only page in a context of its own (run()'s page came with its own).
  const browser = control.context().browser();
  const view = await (await browser.newContext({ viewport: control.viewportSize() })).newPage();
  const viewLogs = [];
  view.on('console', (m) => viewLogs.push(`${m.type()}: ${m.text()}`));
  const pages = { control: [control, controlLogs], view: [view, viewLogs] };
  for (const [page] of Object.values(pages)) await page.addInitScript(recordSends);
  await control.goto(controlUrl);
  await view.goto(viewUrl);
  const say = (o) => console.log(JSON.stringify({ ok: true, ...o }));
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, ...args] = line.split(' ');
    if (cmd === 'ready') {
      await drawn(control, controlLogs);
      await drawn(view, viewLogs);
      say({ ready: true });
    } else if (cmd === 'input') {
      const [name, x, y, ...words] = args;
      const [page] = pages[name];
      const canvas = page.locator('canvas');
      const box = await canvas.boundingBox();
      const size = await canvas.evaluate((c) => [c.width, c.height]);
      // The canvas is shown at its framebuffer size (noVNC's default, no scaling).
      if (Math.round(box.width) !== size[0]) throw new Error(`canvas scaled: ${JSON.stringify(box)} for ${size}`);
      await page.mouse.click(box.x + Number(x), box.y + Number(y));
      await canvas.focus();
      await page.keyboard.type(words.join(' '), { delay: 10 });
      const sent = clientMessages(await page.evaluate(() => window.__sent))
        .filter((m) => m.kind !== 'set_encodings');
      say({ page: name, sent, status: await novncStatus(page) });
    } else {
      throw new Error(`unknown command ${line}`);
    }
  }
  await control.screenshot({ path: `${prefix}-control.png` });
  await view.screenshot({ path: `${prefix}-view.png` });
  return null;
});
