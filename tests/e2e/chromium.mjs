// What every browser script of the end-to-end suite shares: Debian's Chromium, headless,
// through playwright-core (no browser download), one page whose console messages are
// kept, and the answer as one JSON line on stdout ({"ok": false, "error": …} and exit
// status 1 when the script failed).
import { chromium } from 'playwright-core';

// Runs `body(page, logs)` on a new page of `viewport`; prints `{ok: true, ...result}` for
// the object it returns (nothing for null), closes the browser and exits.
export async function run(viewport, body) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let status = 0;
  try {
    const page = await browser.newPage({ viewport });
    const logs = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    const result = await body(page, logs);
    if (result) console.log(JSON.stringify({ ok: true, ...result }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e) }));
    status = 1;
  } finally {
    await browser.close();
  }
  process.exit(status);
}

// noVNC's status line.
export function novncStatus(page) {
  return page.evaluate(() => document.getElementById('noVNC_status')?.textContent || '');
}

// Keeps a copy of every websocket send in `window.__sent` (noVNC reuses its send
// buffer). Give it to `page.addInitScript` so it runs before noVNC loads.
export function recordSends() {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    window.__sent.push(Array.from(bytes));
    return send.call(this, data);
  };
}

// The key, pointer, clipboard and SetEncodings messages of a client's RFB 3.8 stream
// (security None), as recorded by `recordSends`: the version, the security type and
// ClientInit are sent one at a time, then whole messages. Key and pointer events take the
// form the simulator's input log uses; SetEncodings is `{kind: 'set_encodings',
// encodings: [signed 32-bit numbers]}`.
export function clientMessages(sends) {
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
      case 2: { // SetEncodings
        const n = u16(i + 2);
        const encodings = [];
        for (let k = 0; k < n; k++) encodings.push(u32(i + 4 + 4 * k) | 0);
        out.push({ kind: 'set_encodings', encodings });
        i += 4 + 4 * n;
        break;
      }
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
