// Opens tcvnc's browser console page (GET /) in Debian's headless Chromium, checks that
// it lists the targets, follows the link of the first one into noVNC and waits until the
// console is drawn. Usage: node console_page.mjs BASE_URL SCREENSHOT_PNG
import { novncStatus, run } from './chromium.mjs';

const [, , base, shotOut] = process.argv;
await run({ width: 1024, height: 640 }, async (page) => {
  await page.goto(base + '/');
  const rows = await page.$$eval('table tr td:first-child code', (cs) => cs.map((c) => c.textContent));
  await page.click('tr:has(code:text-is("ins-demo0001")) a');
  await page.waitForFunction(() => {
    const c = document.querySelector('canvas');
    if (!c || c.width < 100) return false;
    // The full first update is drawn once the last rows (the grey ramp's white end) are.
    const d = c.getContext('2d').getImageData(c.width - 10, c.height - 5, 1, 1).data;
    return d[0] > 200;
  }, null, { timeout: 30000 });
  const size = await page.evaluate(() => { const c = document.querySelector('canvas'); return [c.width, c.height]; });
  const status = await novncStatus(page);
  await page.screenshot({ path: shotOut });
  return { rows, size, status, url: page.url() };
});
