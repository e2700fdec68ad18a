// The admin console in headless Chromium, against the demo's setup: two cPanel servers and one
// WP Squared server (panel-sim, 200 ms a request), Panelink on SQLite with sample clients and
// services. The tests run in order and share that state.
const { test, expect } = require('@playwright/test');
const { demo, signIn, api, panelLinks, cpanel, app } = require('./demo');

test.describe.configure({ mode: 'serial' });

const cpanelCard = (page) => page.getByRole('region', { name: 'cPanel', exact: true });

test('sign in with an admin token, and only with a valid one', async ({ page }) => {
  await page.goto(`${demo.url}/admin/applications`);
  await expect(page).toHaveURL(/\/admin\/sign-in$/);
  await page.getByLabel('Admin token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('does not sign anyone in');

  await signIn(page);
  await expect(page).toHaveURL(/\/admin\/applications$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Application Links' })).toBeVisible();
  const card = cpanelCard(page);
  await expect(card.getByRole('switch', { name: 'cPanel Application Links' })).toHaveAttribute('aria-checked', 'false');
  await expect(card.getByText('DISABLED', { exact: true })).toBeVisible();
  await expect(page.getByRole('switch', { name: 'WP Squared Application Links' })).toBeVisible();
});

test('switching cPanel on syncs, the badge reaches ACTIVE, and panel-sim holds the links', async ({ page }) => {
  await signIn(page);
  const card = cpanelCard(page);
  const toggle = card.getByRole('switch', { name: 'cPanel Application Links' });
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-checked', 'true');
  await expect(card.getByText('SYNCING', { exact: true })).toBeVisible();
  await expect(card.getByText('ACTIVE', { exact: true })).toBeVisible();
  const links = await panelLinks(cpanel, 'alpha1');
  expect(Object.keys(links)).toHaveLength(14);
  expect(links[app('clientarea:submit_ticket')].label).toBe('Open Ticket');
  // The sync's per-server report and its warnings (the demo's billing data has accounts the
  // panel does not know).
  await expect(card.getByText(/Last sync \(enable\)/)).toBeVisible();
  await expect(card.getByRole('link', { name: /\d+ warnings?/ })).toBeVisible();
});

test('a customer clicks a link in their panel and lands signed in, in the client portal', async ({ page }) => {
  const url = new URL(`${cpanel.url}/sim/click`);
  url.searchParams.set('user', 'alpha1');
  url.searchParams.set('app', demo.click_app);
  await page.goto(url.toString());
  await expect(page).toHaveURL(/\/portal\//);
  await expect(page.locator('#destination')).toContainText('clientarea.php?action=invoices');
});

test('rename, reorder and hide links, Save Changes, and panel-sim follows', async ({ page }) => {
  await signIn(page);
  await cpanelCard(page).getByRole('link', { name: 'Configure' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Configure cPanel Application Links' })).toBeVisible();
  await expect(page.getByRole('group', { name: 'Ordering' })).toBeVisible();
  await expect(page.getByRole('group', { name: 'Support' })).toBeVisible();
  await expect(page.getByRole('group', { name: 'Account' })).toBeVisible();

  // A refused name is reported next to its field, and nothing is saved.
  const ticketName = page.getByRole('textbox', { name: 'Display name for Open Ticket' });
  await ticketName.fill('   ');
  await page.getByRole('button', { name: 'Save Changes' }).click();
  await expect(ticketName).toHaveAttribute('aria-invalid', 'true');
  await expect(page.locator('#clientarea-submit-ticket-error')).toHaveText(/\S/);
  await expect(page.getByRole('status')).toContainText('not valid');

  await ticketName.fill('Get Help');
  await page.getByRole('checkbox', { name: 'Show Check Network Status' }).uncheck();
  // Keyboard: focus the button and press Enter.
  const up = page.getByRole('button', { name: 'Move View Invoice History up' });
  await up.focus();
  await page.keyboard.press('Enter');
  await expect(page.getByRole('button', { name: 'Move View Invoice History up' })).toBeFocused();
  await page.getByRole('button', { name: 'Save Changes' }).click();
  await expect(page.getByRole('status')).toContainText('Changes saved');
  // The badge follows the sync the save started.
  await expect(page.locator('#app-status').getByText('ACTIVE', { exact: true })).toBeVisible();

  await expect.poll(async () => {
    const links = await panelLinks(cpanel, 'alpha1');
    const invoices = Number(links[app('clientarea:invoices')]?.order);
    const emails = Number(links[app('clientarea:emails')]?.order);
    return {
      ticket: links[app('clientarea:submit_ticket')]?.label,
      networkStatus: app('clientarea:network_status') in links,
      invoicesBeforeEmails: invoices < emails,
    };
  }).toEqual({ ticket: 'Get Help', networkStatus: false, invoicesBeforeEmails: true });

  // What the page shows after a reload is what was saved.
  await page.reload();
  await expect(page.getByRole('textbox', { name: 'Display name for Open Ticket' })).toHaveValue('Get Help');
  await expect(page.getByRole('checkbox', { name: 'Show Check Network Status' })).not.toBeChecked();
});

test('Reset to defaults restores the plugin\'s links on the panels', async ({ page }) => {
  await signIn(page);
  await page.goto(`${demo.url}/admin/applications/cpanel/configure`);
  await page.getByRole('button', { name: 'Reset to defaults' }).click();
  await expect(page.getByRole('status')).toContainText('reset to defaults');
  await expect(page.getByRole('textbox', { name: 'Display name for Open Ticket' })).toHaveValue('Open Ticket');
  await expect(page.getByRole('checkbox', { name: 'Show Check Network Status' })).toBeChecked();
  await expect.poll(async () => {
    const links = await panelLinks(cpanel, 'alpha1');
    return {
      count: Object.keys(links).length,
      ticket: links[app('clientarea:submit_ticket')]?.label,
      invoicesAfterEmails: Number(links[app('clientarea:invoices')]?.order) > Number(links[app('clientarea:emails')]?.order),
    };
  }).toEqual({ count: 14, ticket: 'Open Ticket', invoicesAfterEmails: true });
});

test('View Log shows the last operation\'s entries with levels, filterable by level', async ({ page }) => {
  await signIn(page);
  await cpanelCard(page).getByRole('link', { name: 'View Log' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'cPanel Application Links log' })).toBeVisible();
  const rows = page.locator('#log tbody tr');
  await expect(rows.first()).toBeVisible();
  await expect(page.locator('#log .level-debug').first()).toHaveText('debug');
  await expect(page.locator('#log .level-warning').first()).toHaveText('warning');
  await expect(page.locator('#log')).toContainText('You do not have a user named “bob”.');
  await expect(page.locator('#log tbody time').first()).toHaveAttribute('datetime', /^\d{4}-\d\d-\d\dT/);
  await page.getByLabel('Level').selectOption('warning');
  await expect(page.locator('#log .level-debug')).toHaveCount(0);
  const levels = await page.locator('#log tbody .level').allTextContents();
  expect(levels.length).toBeGreaterThan(0);
  expect(new Set(levels)).toEqual(new Set(['warning']));
});

test('leaving the page mid-sync and coming back shows the finished sync', async ({ page }) => {
  await signIn(page);
  const card = cpanelCard(page);
  const toggle = card.getByRole('switch', { name: 'cPanel Application Links' });
  await expect(toggle).toHaveAttribute('aria-checked', 'true');
  await toggle.click();
  // Leave as soon as the switch has answered: on a loaded machine the short disable may already
  // be over by the time the badge could show SYNCING, and what matters is what the page shows
  // on return.
  await expect(toggle).toHaveAttribute('aria-checked', 'false');
  await page.getByRole('link', { name: 'Servers' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Servers' })).toBeVisible();
  // The sync finishes while the admin is elsewhere.
  await expect.poll(async () => (await api('GET', '/api/v1/applications/cpanel')).status).toBe('disabled');
  await page.goBack();
  await expect(cpanelCard(page).getByText('DISABLED', { exact: true })).toBeVisible();
  await expect(cpanelCard(page).getByRole('switch', { name: 'cPanel Application Links' })).toHaveAttribute('aria-checked', 'false');
  expect(Object.keys(await panelLinks(cpanel, 'alpha1'))).toHaveLength(0);
});

test('an admin without configure_application_links gets no Application Links page', async ({ browser }) => {
  await api('POST', '/api/v1/roles', { name: 'Help Desk', permissions: ['manage_clients'] });
  const helper = await api('POST', '/api/v1/admins', { email: 'helpdesk@example.test', role: 'Help Desk' });
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, helper.token);
  await expect(page).toHaveURL(/\/admin\/clients$/);
  const nav = page.getByRole('navigation', { name: 'Console' });
  await expect(nav.getByRole('link', { name: 'Clients' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Application Links' })).toHaveCount(0);
  const pageAnswer = await page.goto(`${demo.url}/admin/applications`);
  expect(pageAnswer.status()).toBe(403);
  expect((await page.goto(`${demo.url}/admin/applications/cpanel/configure`)).status()).toBe(403);
  // The API answers the console's session the same way.
  expect((await page.request.get(`${demo.url}/api/v1/applications`)).status()).toBe(403);
  expect((await page.request.get(`${demo.url}/api/v1/clients`)).status()).toBe(200);
  await context.close();
});

test('a server\'s API token never appears in any page', async ({ page }) => {
  const secrets = demo.servers.map((s) => s.api_token);
  const written = 'console-written-token-0123456789';
  secrets.push(written);
  const seen = [];
  page.on('response', async (response) => {
    if (response.url().startsWith(demo.url)) {
      try { seen.push(await response.text()); } catch { /* a stream */ }
    }
  });
  await signIn(page);
  await page.goto(`${demo.url}/admin/servers`);
  await expect(page.getByRole('table', { name: 'Servers' })).toContainText('cPanel One');

  // Add a server (of the application that is off, so no sync runs), then edit it.
  const add = page.locator('#add-server');
  await add.getByLabel('Name', { exact: true }).fill('Console Added');
  await add.getByLabel('Module').fill('wpsquared');
  await add.getByLabel('Hostname').fill('127.0.0.1');
  await add.getByLabel('Port').fill('9');
  await add.getByLabel('Use TLS (https)').uncheck();
  await add.getByLabel('API username').fill('root');
  await add.getByLabel('API token', { exact: true }).fill(written);
  await add.getByRole('button', { name: 'Add server' }).click();
  await expect(page.getByRole('status')).toContainText('Console Added added');
  await expect(add.getByLabel('API token', { exact: true })).toHaveValue('');
  await page.getByRole('button', { name: 'Edit Console Added' }).click();
  const edit = page.locator('#edit-server');
  await expect(edit.getByLabel('Hostname')).toHaveValue('127.0.0.1');
  await expect(edit.getByLabel('API token', { exact: true })).toHaveValue('');
  await edit.getByLabel('Name', { exact: true }).fill('Console Edited');
  await edit.getByRole('button', { name: 'Save server' }).click();
  await expect(page.getByRole('status')).toContainText('Console Edited saved');

  for (const path of ['/admin/applications', '/admin/applications/cpanel/configure',
    '/admin/applications/cpanel/log', '/admin/servers', '/admin/clients', '/admin/services',
    '/admin/plugins', '/admin/admins', `/admin/servers/${demo.servers[0].id}/import`]) {
    await page.goto(demo.url + path);
    await expect(page.locator('[aria-busy="true"]')).toHaveCount(0);
    const html = await page.content();
    for (const secret of secrets) expect(html, `${path} shows a server's API token`).not.toContain(secret);
  }
  for (const body of seen) for (const secret of secrets) expect(body).not.toContain(secret);

  await page.goto(`${demo.url}/admin/servers`);
  await page.getByRole('row', { name: /Console Edited/ }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('button', { name: 'Really delete Console Edited?' }).click();
  await expect(page.getByRole('status')).toContainText('Console Edited deleted');
});

test('signing out ends the session', async ({ page }) => {
  await signIn(page);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Signed out' })).toBeVisible();
  await page.goto(`${demo.url}/admin/applications`);
  await expect(page).toHaveURL(/\/admin\/sign-in$/);
  expect((await page.request.get(`${demo.url}/api/v1/applications`)).status()).toBe(401);
});
