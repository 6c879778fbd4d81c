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
