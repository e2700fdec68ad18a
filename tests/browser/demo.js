// The demo's setup as the browser tests see it (see tests/src/bin/demo.rs, --ready-file), and
// small helpers: signing in, the admin API, and the simulated panels' WHM API.
const fs = require('node:fs');
const { expect } = require('@playwright/test');

if (!process.env.PANELINK_DEMO) {
  throw new Error('PANELINK_DEMO is not set: run `cargo xtask browser-test` (or `cargo xtask screenshots`)');
}
const demo = JSON.parse(fs.readFileSync(process.env.PANELINK_DEMO, 'utf8'));

async function signIn(page, token = demo.token) {
  await page.goto(demo.console);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('button', { name: 'Sign out' })).toBeVisible();
}

// The admin API with the demo's admin token (what an API user does).
async function api(method, path, body) {
  const response = await fetch(demo.url + path, {
    method,
    headers: { Authorization: `Bearer ${demo.token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// One WHM API 1 call to a simulated panel.
async function whm(server, fn, params = {}) {
  const url = new URL(`${server.url}/json-api/${fn}`);
  url.searchParams.set('api.version', '1');
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const response = await fetch(url, {
    headers: { Authorization: `whm ${server.api_user}:${server.api_token}` },
  });
  const body = await response.json();
  if (!body.metadata || body.metadata.result !== 1) throw new Error(`${fn}: ${JSON.stringify(body)}`);
  return body.data;
}

// The links a panel holds for one account: app name → { label, order, … }.
async function panelLinks(server, user) {
  const list = await whm(server, 'list_integration_links', { user });
  const out = {};
  for (const { app } of list.links) {
    out[app] = (await whm(server, 'get_integration_link_user_config', { user, app })).userconfig;
  }
  return out;
}

const cpanel = demo.servers.find((s) => s.module === 'cpanel');
const app = (scope) => `PANELINK_${scope.replaceAll(':', '_')}`;

module.exports = { demo, signIn, api, whm, panelLinks, cpanel, app };
