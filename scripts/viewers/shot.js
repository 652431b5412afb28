// node shot.js URL OUT.png WAIT_MS [TITLE_TO_WAIT_FOR]
const puppeteer = require('puppeteer-core');
(async () => {
  const [url, out, waitMs, title] = process.argv.slice(2);
  const browser = await puppeteer.launch({protocolTimeout: 600000, executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--enable-webgl',
           '--ignore-gpu-blocklist', '--allow-file-access-from-files', '--window-size=640,640']});
  const page = await browser.newPage();
  page.on('console', m => console.log('console:', m.text().slice(0, 200)));
  page.on('pageerror', e => console.log('pageerror:', String(e).slice(0, 200)));
  await page.setViewport({width: 640, height: 640});
  await page.goto(url, {waitUntil: 'load', timeout: 120000});
  if (title) await page.waitForFunction(t => document.title === t, {timeout: 240000, polling: 500}, title);
  await new Promise(r => setTimeout(r, Number(waitMs)));
  await page.screenshot({path: out});
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
