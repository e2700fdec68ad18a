// `cargo xtask screenshots`: a PNG of each admin console page, into docs/screenshots/
// (PANELINK_SCREENSHOTS), against a fresh demo with cPanel's Application Links switched on.
const path = require('node:path');
const { test, expect } = require('@playwright/test');
const { demo, signIn } = require('./demo');

test.describe.configure({ mode: 'serial' });

const out = (name) => path.join(process.env.PANELINK_SCREENSHOTS, `${name}.png`);

async function settled(page) {
  await expect(page.locator('[aria-busy="true"]')).toHaveCount(0);
}

test('every page', async ({ page }) => {
  await page.goto(`${demo.url}/admin/sign-in`);
  await page.getByLabel('Admin token').fill('pnl_' + 'x'.repeat(20));
  await page.screenshot({ path: out('sign-in') });
  await signIn(page);

  const toggle = page.getByRole('switch', { name: 'cPanel Application Links' });
  await toggle.click();
  await expect(page.getByRole('region', { name: 'cPanel', exact: true }).getByText('ACTIVE', { exact: true })).toBeVisible();
  await page.screenshot({ path: out('applications'), fullPage: true });

  await page.goto(`${demo.url}/admin/applications/cpanel/configure`);
  await settled(page);
  await page.getByRole('textbox', { name: 'Display name for Open Ticket' }).fill('Get Help');
  await page.screenshot({ path: out('configure'), fullPage: true });

  await page.goto(`${demo.url}/admin/applications/cpanel/log`);
  await settled(page);
  await page.screenshot({ path: out('log'), fullPage: true });

  for (const name of ['servers', 'services', 'plugins', 'admins']) {
    await page.goto(`${demo.url}/admin/${name}`);
    await settled(page);
    await page.screenshot({ path: out(name), fullPage: true });
  }

  await page.goto(`${demo.url}/admin/clients`);
  await settled(page);
  await page.getByRole('button', { name: 'Users of Acme Hosting Ltd' }).click();
  await expect(page.getByRole('heading', { name: /Acme Hosting Ltd: users/ })).toBeVisible();
  await page.screenshot({ path: out('clients'), fullPage: true });

  await page.goto(`${demo.url}/admin/servers/${demo.servers[0].id}/import`);
  await settled(page);
  await page.screenshot({ path: out('import'), fullPage: true });
});
