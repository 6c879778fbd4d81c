// Opens noVNC (served by tcvnc) in Debian's headless Chromium through playwright-core,
// waits until the console is drawn and stable, and writes the canvas pixels and a page
// screenshot. Usage: node browser.mjs URL CANVAS_PNG SCREENSHOT_PNG
import { novncStatus, run } from './chromium.mjs';
import { writeFileSync } from 'node:fs';

const [, , url, canvasOut, shotOut] = process.argv;
await run({ width: 1024, height: 600 }, async (page, logs) => {
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
  return { status: await novncStatus(page) };
});
