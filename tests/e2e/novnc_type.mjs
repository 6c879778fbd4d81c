// Opens noVNC at URL in Debian's headless Chromium, waits until the console is drawn,
// focuses noVNC's canvas and types TEXT, then Enter, with playwright's keyboard (real
// key events: noVNC turns them into RFB key events). Prints one JSON line once typed,
// then waits until its stdin closes (the test has looked at the result) and writes a
// page screenshot. Usage: node novnc_type.mjs URL TEXT SCREENSHOT_PNG
import { novncStatus, run } from './chromium.mjs';

const [, , url, text, shotOut] = process.argv;
await run({ width: 1024, height: 600 }, async (page, logs) => {
  await page.goto(url);
  try {
    await page.waitForFunction(() => {
      const c = document.querySelector('canvas');
      if (!c || c.width < 100) return false;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 128) return true;
      return false;
    }, null, { timeout: 30000, polling: 100 });
  } catch (e) {
    throw new Error(`canvas never drawn: ${e}; console: ${logs.join(' | ')}`);
  }
  await page.evaluate(() => document.querySelector('canvas').focus());
  const focused = await page.evaluate(() => document.activeElement?.tagName);
  if (focused !== 'CANVAS') throw new Error(`noVNC's canvas has no focus (${focused})`);
  await page.keyboard.type(text, { delay: 20 });
  await page.keyboard.press('Enter');
  console.log(JSON.stringify({ ok: true, typed: text, status: await novncStatus(page) }));
  // Stay connected until the test has seen the result.
  await new Promise((resolve) => {
    process.stdin.on('end', resolve);
    process.stdin.on('close', resolve);
    process.stdin.resume();
  });
  await page.screenshot({ path: shotOut });
  return null;
});
