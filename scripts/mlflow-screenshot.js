// The README's screenshot of the MLflow UI listing a sweep (the demo's, exported with
// `multifair export mlflow`), with each row's seed runs expanded:
//   npm install playwright-core@1 && apt-get install chromium
//   node scripts/mlflow-screenshot.js http://127.0.0.1:5055/#/experiments/1/runs docs/mlflow-sweep.png
const { chromium } = require('playwright-core');

(async () => {
  const [url, out] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1500, height: 760 } });
  await page.goto(url, { waitUntil: 'load', timeout: 60000 });
  await page.waitForTimeout(6000);
  // The assistant panel, closed.
  const close = page.locator('button[aria-label="Close"]').first();
  if (await close.count()) { await close.click().catch(() => {}); }
  // Each row's seed runs, expanded bottom first so that the rows above keep their place.
  for (const y of [361, 329, 297, 265]) { await page.mouse.click(318, y); await page.waitForTimeout(400); }
  await page.waitForTimeout(2000);
  await page.screenshot({ path: out });
  await browser.close();
})();
