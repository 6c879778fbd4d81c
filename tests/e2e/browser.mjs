// Opens noVNC (served by tcvnc) in Debian's headless Chromium through playwright-core,
// waits until the console is drawn and stable, and writes the canvas pixels and a page
// screenshot. Usage: node browser.mjs URL CANVAS_PNG SCREENSHOT_PNG
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';

const [, , url, canvasOut, shotOut] = process.argv;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let status = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 600 } });
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  await page.goto(url);
  // Poll (bounded) until the canvas has content and two reads agree: the VM is paused,
  // so the picture is final once the first full update is drawn.
  const read = () => page.evaluate(() => {
    const c = document.querySelector('canvas');
    if (!c || c.width < 100) return null;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 128) lit++;
    return lit > 0 ? c.toDataURL('image/png') : null;
  });
  let last = null;
  const deadline = Date.now() + 30000;
  for (;;) {
    const now = await read();
    if (now && now === last) break;
    last = now;
    if (Date.now() > deadline) throw new Error('canvas never settled; console: ' + logs.join(' | '));
    await page.waitForTimeout(250);
  }
  writeFileSync(canvasOut, Buffer.from(last.split(',')[1], 'base64'));
  await page.screenshot({ path: shotOut });
  const text = await page.evaluate(() => document.getElementById('noVNC_status')?.textContent || '');
  console.log(JSON.stringify({ ok: true, status: text }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
