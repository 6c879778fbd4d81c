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
import { novncStatus, run } from './chromium.mjs';

const [, , controlUrl, viewUrl, prefix] = process.argv;

// Keeps a copy of every websocket send (noVNC reuses its send buffer).
function recordSends() {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    window.__sent.push(Array.from(bytes));
    return send.call(this, data);
  };
}

// The key and pointer events in a client's RFB 3.8 stream (security None): the version,
// the security type and ClientInit are sent one at a time, then whole messages.
function inputs(sends) {
  if (sends.length < 3 || String.fromCharCode(...sends[0].slice(0, 4)) !== 'RFB '
      || sends[1].length !== 1 || sends[2].length !== 1) {
    throw new Error(`not an RFB 3.8 handshake with security None: ${JSON.stringify(sends.slice(0, 3))}`);
  }
  const s = sends.slice(3).flat();
  const u16 = (i) => (s[i] << 8) | s[i + 1];
  const u32 = (i) => ((s[i] << 24) | (s[i + 1] << 16) | (s[i + 2] << 8) | s[i + 3]) >>> 0;
  const out = [];
  let i = 0;
  while (i < s.length) {
    switch (s[i]) {
      case 0: i += 20; break; // SetPixelFormat
      case 2: i += 4 + 4 * u16(i + 2); break; // SetEncodings
      case 3: i += 10; break; // FramebufferUpdateRequest
      case 4: out.push({ kind: 'key', down: s[i + 1] === 1, keysym: u32(i + 4) }); i += 8; break;
      case 5: out.push({ kind: 'pointer', mask: s[i + 1], x: u16(i + 2), y: u16(i + 4) }); i += 6; break;
      case 6: { // ClientCutText (negative length: extended clipboard)
        const n = u32(i + 4) | 0;
        out.push({ kind: 'cut_text', length: Math.abs(n) });
        i += 8 + Math.abs(n);
        break;
      }
      case 150: i += 10; break; // EnableContinuousUpdates
      case 248: i += 9 + s[i + 8]; break; // ClientFence
      case 250: i += 4; break; // XVP
      case 251: i += 8 + 16 * s[i + 6]; break; // SetDesktopSize
      case 255: // QEMU: extended key event
        if (s[i + 1] !== 0) throw new Error(`QEMU client message ${s[i + 1]}`);
        out.push({ kind: 'qemu_key', down: u16(i + 2) === 1, keysym: u32(i + 4), keycode: u32(i + 8) });
        i += 12;
        break;
      default:
        throw new Error(`unknown client message type ${s[i]} at byte ${i}`);
    }
  }
  return out;
}

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
      const sent = inputs(await page.evaluate(() => window.__sent));
      say({ page: name, sent, status: await novncStatus(page) });
    } else {
      throw new Error(`unknown command ${line}`);
    }
  }
  await control.screenshot({ path: `${prefix}-control.png` });
  await view.screenshot({ path: `${prefix}-view.png` });
  return null;
});
