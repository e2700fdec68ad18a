// Panelink admin console: fills the server-rendered pages by calling the public admin API
// (/api/v1/...) with the console session's cookie and CSRF token, and follows
// /api/v1/events (Server-Sent Events) for live state. No framework, no build step.
'use strict';

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';
  const CSRF = meta('csrf-token');
  const BASE = meta('panelink-base');
  const root = document.getElementById('console');
  if (!root) return;

  class ApiError extends Error {
    constructor(status, body) {
      super(body?.error?.message ?? `The request failed (HTTP ${status}).`);
      this.status = status;
      this.code = body?.error?.code ?? '';
      this.fields = body?.error?.fields ?? {};
    }
  }

  // One admin API call. JSON in and out; a Blob goes as application/wasm. 401: the session is
  // over, back to sign-in.
  async function api(method, path, body, extraHeaders = {}) {
    const headers = { Accept: 'application/json', ...extraHeaders };
    if (method !== 'GET') headers['X-CSRF-Token'] = CSRF;
    let payload;
    if (body instanceof Blob) {
      payload = body;
      headers['Content-Type'] = 'application/wasm';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(BASE + path, {
      method, headers, body: payload, credentials: 'same-origin',
    });
    if (response.status === 401) {
      location.assign(`${BASE}/admin/sign-in`);
      throw new ApiError(401, null);
    }
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // An element: attributes (on* are listeners; true is a bare attribute; false/null skip),
  // then children (nodes or text).
  function h(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = v;
      else if (k === 'value') e.value = v;
      else if (k === 'checked') e.checked = Boolean(v);
      else if (v === true) e.setAttribute(k, '');
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const $ = (id) => document.getElementById(id);

  function say(text, error = false) {
    const box = $('status-message');
    box.textContent = text;
    box.className = error ? 'refused' : 'ok';
  }

  function fail(e) {
    if (e instanceof ApiError && e.status === 401) return;
    say(e.message || String(e), true);
  }

  function fill(box, ...children) {
    box.replaceChildren(...children.flat());
    box.removeAttribute('aria-busy');
  }

  function table(caption, headings, rows) {
    return h('table', {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, headings.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows));
  }

  function when(iso) {
    if (!iso) return '—';
    return h('time', { datetime: iso }, new Date(iso).toLocaleString());
  }

  // A button that asks once more before acting (no modal dialogs).
  function confirmButton(label, confirmLabel, action) {
    const b = h('button', { type: 'button', class: 'danger' }, label);
    let armed = false;
    b.addEventListener('click', async () => {
      if (!armed) {
        armed = true;
        b.textContent = confirmLabel;
        return;
      }
      b.disabled = true;
      try { await action(); } catch (e) { fail(e); } finally { b.disabled = false; }
    });
    b.addEventListener('blur', () => { armed = false; b.textContent = label; });
    return b;
  }

  function actionButton(label, action, attrs = {}) {
    const b = h('button', { type: 'button', ...attrs }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await action(); } catch (e) { fail(e); } finally { b.disabled = false; }
    });
    return b;
  }

  // Forms: the fields become the JSON body (empty optional fields are left out, so the API
  // keeps or defaults them); a refusal shows each field's reason next to the field.
  function formBody(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.type === 'submit' || el.type === 'button' || el.type === 'file') continue;
      const list = el.name.match(/^(\w+)\[\](.+)$/);
      if (list) {
        body[list[1]] ??= [];
        if (el.checked) body[list[1]].push(list[2]);
        continue;
      }
      if (el.dataset.type === 'bool') { body[el.name] = el.checked; continue; }
      const v = el.value.trim();
      if (v === '') { if (el.required || 'sendEmpty' in el.dataset) body[el.name] = ''; continue; }
      body[el.name] = el.dataset.type === 'number' ? Number(v) : v;
    }
    return body;
  }

  function clearErrors(scope) {
    scope.querySelectorAll('.field-error').forEach((e) => { e.textContent = ''; });
    scope.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
  }

  function showErrors(form, e) {
    const unplaced = [];
    for (const [name, why] of Object.entries(e.fields)) {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (!slot) { unplaced.push(`${name}: ${why}`); continue; }
      slot.textContent = why;
      form.querySelector(`[name="${CSS.escape(name)}"]`)?.setAttribute('aria-invalid', 'true');
    }
    say([e.message, ...unplaced].join(' '), true);
    form.querySelector('[aria-invalid="true"]')?.focus();
  }

  function bindForm(form, done) {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const [method, template] = form.dataset.api.split(' ');
      const path = template.replace('{id}', form.dataset.id ?? '');
      const submit = form.querySelector('[type="submit"]');
      if (submit) submit.disabled = true;
      try {
        const result = await api(method, path, formBody(form));
        // Write-only fields (a server's API token) never stay on the page.
        form.querySelectorAll('[data-write-only]').forEach((i) => { i.value = ''; });
        await done(result, form);
      } catch (e) {
        if (e instanceof ApiError && e.status === 422) showErrors(form, e); else fail(e);
      } finally {
        if (submit) submit.disabled = false;
      }
    });
  }

  // Live application state: every event is a hint to re-read the application (the newest
  // request's answer is the truth; requests for one application are never in flight twice, and
  // one that arrives during another is made after it). The stream's (re)connection re-reads
  // everything, so coming back to a page, or a dropped connection, shows the true state.
  function liveApps(only, render) {
    const inFlight = new Set();
    const again = new Set();
    async function refresh(id) {
      if (inFlight.has(id)) { again.add(id); return; }
      inFlight.add(id);
      try {
        const app = await api('GET', `/api/v1/applications/${encodeURIComponent(id)}`);
        let detail = null;
        if (app.sync) {
          try { detail = await api('GET', `/api/v1/syncs/${app.sync.id}`); } catch { detail = null; }
        }
        render(app, detail);
      } catch (e) {
        fail(e);
      } finally {
        inFlight.delete(id);
        if (again.delete(id)) refresh(id);
      }
    }
    async function refreshAll() {
      if (only) { only.forEach(refresh); return; }
      const list = await api('GET', '/api/v1/applications');
      list.applications.forEach((app) => refresh(app.id));
    }
    const wanted = (id) => !only || only.includes(id);
    const events = new EventSource(`${BASE}/api/v1/events`);
    events.addEventListener('open', () => refreshAll().catch(fail));
    events.addEventListener('application', (ev) => {
      const { id } = JSON.parse(ev.data);
      if (wanted(id)) refresh(id);
    });
    events.addEventListener('sync', (ev) => {
      const { application } = JSON.parse(ev.data);
      if (wanted(application)) refresh(application);
    });
    events.addEventListener('lagged', () => refreshAll().catch(fail));
    events.addEventListener('error', () => {
      // Closed for good (e.g. the session ended): a plain request finds out why (401 → sign-in).
      if (events.readyState === EventSource.CLOSED) refreshAll().catch(fail);
    });
    window.addEventListener('pagehide', () => events.close());
    refreshAll().catch(fail);
    return refresh;
  }

  const STATUS_TEXT = { disabled: 'DISABLED', syncing: 'SYNCING', active: 'ACTIVE' };

  function badge(status) {
    return h('span', { class: `badge badge-${status}`, 'data-role': 'status' }, STATUS_TEXT[status] ?? status.toUpperCase());
  }

  let serverNames = null;
  async function serverName(id) {
    if (serverNames === null) {
      serverNames = {};
      try {
        const list = await api('GET', '/api/v1/servers');
        for (const s of list.servers) serverNames[s.id] = s.name;
      } catch { /* without manage_servers: ids only */ }
    }
    return serverNames[id] ?? `Server ${id}`;
  }

  // The status line of an application: badge, progress of the running sync, warnings.
  function statusLine(app) {
    const running = app.status === 'syncing' && app.sync;
    return h('div', { class: 'status-line' },
      badge(app.status),
      running ? h('span', { class: 'progress', 'data-role': 'progress' },
        h('progress', { max: Math.max(app.sync.total, 1), value: app.sync.done, 'aria-label': `${app.name} sync progress` }),
        ` ${app.sync.done} of ${app.sync.total} done`) : null,
      h('a', { href: `${BASE}/admin/applications/${app.id}/log`, class: 'warnings', 'data-role': 'warnings' },
        `${app.warnings} ${app.warnings === 1 ? 'warning' : 'warnings'}`));
  }

  async function serverList(detail) {
    if (!detail || !detail.servers.length) return null;
    const items = [];
    for (const s of detail.servers) {
      items.push(h('li', {},
        h('strong', {}, await serverName(s.server_id)), `: ${s.state}, ${s.done} of ${s.total}`,
        s.attempts ? `, ${s.attempts} failed attempts` : null,
        s.next_attempt_at ? [', next attempt ', when(s.next_attempt_at)] : null,
        s.last_error ? h('span', { class: 'refused' }, ` — ${s.last_error}`) : null));
    }
    const title = detail.finished_at
      ? [`Last sync (${detail.kind}): ${detail.state.replaceAll('_', ' ')}, finished `, when(detail.finished_at)]
      : [`Sync under way (${detail.kind}): ${detail.state}`];
    return h('div', { class: 'servers' }, h('p', {}, title), h('ul', {}, items));
  }

  // ----- Application Links -----
  function pageApplications() {
    const box = $('apps');
    const cards = new Map();
    function card(app) {
      let c = cards.get(app.id);
      if (c) return c;
      const headingId = `app-${app.id}-name`;
      const toggle = h('button', {
        type: 'button', role: 'switch', class: 'switch', 'aria-checked': 'false',
        'aria-label': `${app.name} Application Links`,
      }, h('span', { class: 'switch-text', 'aria-hidden': 'true' }, 'OFF'));
      toggle.addEventListener('click', async () => {
        const enabled = toggle.getAttribute('aria-checked') !== 'true';
        toggle.disabled = true;
        try {
          await api('PATCH', `/api/v1/applications/${encodeURIComponent(app.id)}`, { enabled });
          say(`${app.name} Application Links turned ${enabled ? 'on' : 'off'}; the sync follows.`);
        } catch (e) { fail(e); } finally {
          toggle.disabled = false;
          refresh(app.id);
        }
      });
      c = {
        section: h('section', { class: 'app', 'aria-labelledby': headingId }),
        heading: h('h2', { id: headingId }, app.name),
        toggle,
        status: h('div', { 'aria-live': 'polite' }),
        servers: h('div'),
      };
      c.section.append(c.heading,
        h('p', { class: 'help' }, app.description),
        h('div', { class: 'app-controls' }, toggle, c.status),
        c.servers,
        h('p', { class: 'app-links' },
          h('a', { href: `${BASE}/admin/applications/${app.id}/configure`, class: 'button' }, 'Configure'),
          ' ',
          h('a', { href: `${BASE}/admin/applications/${app.id}/log`, class: 'button' }, 'View Log')),
        h('p', { class: 'help' },
          `Plugin ${app.plugin.name} ${app.plugin.version}; servers: ${app.servers.total}, supported ${app.servers.supported}, synced ${app.servers.synced}, failed ${app.servers.failed}.`));
      if (cards.size === 0) box.replaceChildren();
      box.removeAttribute('aria-busy');
      c.section.dataset.name = app.name;
      cards.set(app.id, c);
      // In name order, whatever order their first answers came in.
      const after = [...box.children].find((other) => other.dataset.name.localeCompare(app.name) > 0);
      box.insertBefore(c.section, after ?? null);
      return c;
    }
    const refresh = liveApps(null, async (app, detail) => {
      const c = card(app);
      c.toggle.setAttribute('aria-checked', String(app.enabled));
      c.toggle.querySelector('.switch-text').textContent = app.enabled ? 'ON' : 'OFF';
      c.status.replaceChildren(statusLine(app));
      c.section.querySelector('p.help:last-child').textContent =
        `Plugin ${app.plugin.name} ${app.plugin.version}; servers: ${app.servers.total}, supported ${app.servers.supported}, synced ${app.servers.synced}, failed ${app.servers.failed}.`;
      c.servers.replaceChildren(...[await serverList(detail)].filter(Boolean));
    });
  }

  // ----- Configure -----
  function pageConfigure() {
    const id = root.dataset.app;
    const form = $('links-form');
    const groupsBox = $('link-groups');
    const GROUPS = [['ordering', 'Ordering'], ['support', 'Support'], ['account', 'Account']];
    let links = [];
    liveApps([id], async (app, detail) => {
      $('app-status').replaceChildren(statusLine(app), ...[await serverList(detail)].filter(Boolean));
    });

    const keyOf = (scope) => scope.replace(/[^A-Za-z0-9]/g, '-');

    function render(focus) {
      const parts = [];
      for (const [group, title] of GROUPS) {
        const inGroup = links.filter((l) => l.group === group);
        if (!inGroup.length) continue;
        const list = h('ol', { class: 'links' });
        inGroup.forEach((link, i) => {
          const key = keyOf(link.scope);
          const move = (dir) => () => {
            if ((dir < 0 && i === 0) || (dir > 0 && i === inGroup.length - 1)) return;
            const from = links.indexOf(link);
            const to = links.indexOf(inGroup[i + dir]);
            [links[from], links[to]] = [links[to], links[from]];
            render(`${key}-${dir < 0 ? 'up' : 'down'}`);
          };
          list.append(h('li', { 'data-scope': link.scope },
            h('input', {
              type: 'checkbox', id: `${key}-show`, checked: link.enabled,
              'aria-label': `Show ${link.default_label}`,
              onchange: (e) => { link.enabled = e.target.checked; },
            }),
            h('label', { for: `${key}-show`, class: 'default-label' }, link.default_label),
            h('input', {
              type: 'text', id: `${key}-name`, value: link.display_name,
              'aria-label': `Display name for ${link.default_label}`,
              'aria-describedby': `${key}-error`,
              oninput: (e) => { link.display_name = e.target.value; },
            }),
            h('button', {
              type: 'button', id: `${key}-up`, class: 'move', 'aria-label': `Move ${link.default_label} up`,
              'aria-disabled': i === 0 ? 'true' : null, onclick: move(-1),
            }, '↑'),
            h('button', {
              type: 'button', id: `${key}-down`, class: 'move', 'aria-label': `Move ${link.default_label} down`,
              'aria-disabled': i === inGroup.length - 1 ? 'true' : null, onclick: move(1),
            }, '↓'),
            h('p', { class: 'field-error', id: `${key}-error` })));
        });
        parts.push(h('fieldset', { class: 'group' }, h('legend', {}, title), list));
      }
      fill(groupsBox, parts);
      if (focus) $(focus)?.focus();
    }

    async function save(toSave, done) {
      clearErrors(form);
      const buttons = form.querySelectorAll('.actions button');
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const saved = await api('PUT', `/api/v1/applications/${encodeURIComponent(id)}/links`, {
          links: toSave.map((l) => ({ scope: l.scope, display_name: l.display_name, enabled: l.enabled })),
        });
        links = saved.links;
        render();
        say(done + (saved.sync ? ' The sync is pushing them to every account.' : ' They are pushed when Application Links are switched on.'));
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 422)) { fail(e); return; }
        const unplaced = [];
        for (const [field, why] of Object.entries(e.fields)) {
          const m = field.match(/^links\[(\d+)\]\.(\w+)$/);
          const link = m ? toSave[Number(m[1])] : null;
          if (link) {
            const key = keyOf(link.scope);
            $(`${key}-error`).textContent = why;
            $(m[2] === 'display_name' ? `${key}-name` : `${key}-show`)?.setAttribute('aria-invalid', 'true');
          } else if (field === 'links') {
            $('links-error').textContent = why;
          } else {
            unplaced.push(`${field}: ${why}`);
          }
        }
        say([e.message, ...unplaced].join(' '), true);
        form.querySelector('[aria-invalid="true"]')?.focus();
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    }

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      save(links, 'Changes saved.');
    });
    $('reset-links').addEventListener('click', () => {
      const defaults = links
        .map((l) => ({ ...l, display_name: l.default_label, enabled: true }))
        .sort((a, b) => a.default_order - b.default_order);
      save(defaults, 'Links reset to defaults.');
    });
    api('GET', `/api/v1/applications/${encodeURIComponent(id)}/links`)
      .then((list) => { links = list.links; render(); })
      .catch(fail);
  }

  // ----- View Log -----
  function pageLog() {
    const id = root.dataset.app;
    const box = $('log');
    const filter = $('level-filter');
    let entries = [];
    function render() {
      const level = filter.value;
      const shown = entries.filter((e) => !level || e.level === level);
      if (!entries.length) { fill(box, h('p', {}, 'The log is empty: no provisioning operation has run yet.')); return; }
      fill(box,
        h('p', {}, `${shown.length} of ${entries.length} entries shown.`),
        table('Log entries', ['Time', 'Level', 'Message', 'Server', 'Service'], shown.map((e) => h('tr', { class: `entry entry-${e.level}` },
          h('td', {}, when(e.at)),
          h('td', {}, h('span', { class: `level level-${e.level}` }, e.level)),
          h('td', {}, e.message),
          h('td', {}, e.server_id ? (serverNames?.[e.server_id] ?? `Server ${e.server_id}`) : ''),
          h('td', {}, e.service_id ?? '')))));
    }
    async function load() {
      const log = await api('GET', `/api/v1/applications/${encodeURIComponent(id)}/log`);
      await serverName(0);
      entries = log.entries;
      render();
    }
    filter.addEventListener('change', render);
    liveApps([id], () => load().catch(fail));
  }

  // ----- Servers -----
  function pageServers() {
    const box = $('servers');
    const editSection = $('edit-server-section');
    const editForm = $('edit-server');
    const canImport = root.dataset.canImport === 'true';
    async function load() {
      const list = await api('GET', '/api/v1/servers');
      if (!list.servers.length) { fill(box, h('p', {}, 'No servers yet: add one below.')); return; }
      fill(box, table('Servers', ['Name', 'Module', 'Address', 'API user', 'Enabled', 'Support', 'Actions'],
        list.servers.map((s) => h('tr', {},
          h('td', {}, s.name),
          h('td', {}, s.module),
          h('td', {}, `${s.secure ? 'https' : 'http'}://${s.hostname}:${s.port}`),
          h('td', {}, s.username),
          h('td', {}, s.enabled ? 'yes' : 'no'),
          h('td', {}, s.supported === null ? 'not checked' : (s.supported ? 'supported' : 'not supported'),
            s.support_detail ? h('div', { class: 'help' }, s.support_detail) : null,
            s.checked_at ? h('div', { class: 'help' }, 'checked ', when(s.checked_at)) : null),
          h('td', { class: 'actions' },
            actionButton('Check', async () => {
              const r = await api('POST', `/api/v1/servers/${s.id}/check`, {});
              say(`${s.name}: ${r.supported ? 'supported' : 'not supported'} (${r.detail})`, !r.supported);
              await load();
            }, { 'aria-label': `Check ${s.name}` }),
            h('button', { type: 'button', 'aria-label': `Edit ${s.name}`, onclick: () => edit(s) }, 'Edit'),
            canImport ? h('a', { class: 'button', href: `${BASE}/admin/servers/${s.id}/import`, 'aria-label': `Import accounts of ${s.name}` }, 'Import') : null,
            confirmButton('Delete', `Really delete ${s.name}?`, async () => {
              await api('DELETE', `/api/v1/servers/${s.id}`);
              say(`${s.name} deleted.`);
              await load();
            }))))));
    }
    function edit(s) {
      clearErrors(editForm);
      editForm.dataset.id = s.id;
      for (const [k, v] of Object.entries(s)) {
        const input = editForm.elements.namedItem(k);
        if (!input || input.dataset.writeOnly) continue;
        if (input.type === 'checkbox') input.checked = Boolean(v); else input.value = v ?? '';
      }
      editForm.elements.namedItem('api_token').value = '';
      $('edit-server-heading').textContent = `Edit ${s.name}`;
      editSection.hidden = false;
      editForm.elements.namedItem('name').focus();
    }
    $('cancel-edit').addEventListener('click', () => { editSection.hidden = true; });
    bindForm(editForm, async (s) => { editSection.hidden = true; say(`${s.name} saved.`); await load(); });
    bindForm($('add-server'), async (s, form) => { form.reset(); say(`${s.name} added; check it to see whether its panel supports links.`); await load(); });
    load().catch(fail);
  }

  // ----- Import a server's accounts -----
  function pageImport() {
    const id = root.dataset.server;
    const box = $('import');
    function accounts(result) {
      return table('Accounts', ['User name', 'Domain', 'Owner', 'Suspended', 'Action'],
        result.accounts.map((a) => h('tr', {},
          h('td', {}, a.username), h('td', {}, a.domain), h('td', {}, a.owner ?? ''),
          h('td', {}, a.suspended ? 'yes' : 'no'),
          h('td', {}, a.action === 'error' ? h('span', { class: 'refused' }, `error: ${a.error ?? ''}`) : a.action))));
    }
    async function preview() {
      let result;
      try {
        result = await api('POST', `/api/v1/servers/${id}/import`, { apply: false });
      } catch (e) {
        if (e instanceof ApiError && (e.status === 404 || e.status === 405) && e.message.startsWith('Route')) {
          fill(box, h('p', {}, 'This host does not offer importing accounts.'));
          return;
        }
        fill(box, h('p', { class: 'refused' }, e.message));
        return;
      }
      const creating = result.accounts.filter((a) => a.action === 'create').length;
      fill(box,
        h('p', {}, `${result.accounts.length} accounts on the server; importing creates ${creating}.`),
        accounts(result),
        creating ? actionButton(`Import ${creating} accounts`, async () => {
          const applied = await api('POST', `/api/v1/servers/${id}/import`, { apply: true });
          fill(box, h('p', { class: 'ok' }, `Imported: ${applied.created} created.`), accounts(applied));
          say(`Imported: ${applied.created} created.`);
        }) : h('p', {}, 'Nothing to import.'));
    }
    preview();
  }

  // ----- Clients -----
  function pageClients() {
    const box = $('clients');
    const statuses = root.dataset.statuses.split(',');
    const permissions = root.dataset.permissions.split(',');
    const detail = $('client-detail');
    const addUser = $('add-user');
    async function load() {
      const list = await api('GET', '/api/v1/clients');
      if (!list.clients.length) { fill(box, h('p', {}, 'No clients yet.')); return; }
      fill(box, table('Clients', ['Name', 'E-mail', 'Status', 'Single sign-on', 'Actions'],
        list.clients.map((c) => h('tr', {},
          h('td', {}, c.name),
          h('td', {}, c.email),
          h('td', {}, h('select', {
            'aria-label': `Status of ${c.name}`,
            onchange: (e) => patch(c, { status: e.target.value }),
          }, statuses.map((s) => h('option', { value: s, selected: s === c.status }, s)))),
          h('td', {}, h('input', {
            type: 'checkbox', checked: c.allow_sso, 'aria-label': `Allow single sign-on for ${c.name}`,
            onchange: (e) => patch(c, { allow_sso: e.target.checked }),
          })),
          h('td', {}, h('button', { type: 'button', onclick: () => open(c) }, `Users of ${c.name}`))))));
    }
    async function patch(c, body) {
      try {
        await api('PATCH', `/api/v1/clients/${c.id}`, body);
        say(`${c.name} saved.`);
      } catch (e) { fail(e); }
      await load().catch(fail);
    }
    async function open(c) {
      addUser.dataset.id = c.id;
      $('client-detail-heading').textContent = `${c.name}: users and activity`;
      detail.hidden = false;
      await loadUsers(c);
      $('client-detail-heading').focus();
    }
    async function loadUsers(c) {
      const users = await api('GET', `/api/v1/clients/${c.id}/users`);
      fill($('client-users'), table('Users', ['E-mail', 'Permissions', ''], users.users.map((u) => {
        const boxes = permissions.map((p) => h('label', { class: 'inline-check' },
          h('input', { type: 'checkbox', value: p, checked: u.permissions.includes(p), disabled: u.owner, 'aria-label': `${p} for ${u.email}` }), ` ${p}`));
        return h('tr', {},
          h('td', {}, u.email, u.owner ? ' (owner)' : ''),
          h('td', {}, boxes),
          h('td', {}, u.owner ? 'holds every permission' : actionButton('Save permissions', async () => {
            const chosen = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
            await api('PATCH', `/api/v1/clients/${c.id}/users/${u.id}`, { permissions: chosen });
            say(`Permissions of ${u.email} saved.`);
          }, { 'aria-label': `Save permissions of ${u.email}` })));
      })));
      const activity = await api('GET', `/api/v1/clients/${c.id}/activity?limit=20`);
      fill($('client-activity'), activity.entries.length
        ? table('Activity', ['Time', 'Event', 'Outcome', 'Actor', 'Detail'], activity.entries.map((a) => h('tr', {},
          h('td', {}, when(a.at)), h('td', {}, a.event), h('td', {}, a.outcome), h('td', {}, a.actor), h('td', {}, a.detail))))
        : h('p', {}, 'No activity yet.'));
      addUser.onreset = null;
      addUser._client = c;
    }
    bindForm(addUser, async (u, form) => { form.reset(); say(`${u.email} added.`); await loadUsers(addUser._client); });
    bindForm($('add-client'), async (c, form) => { form.reset(); say(`${c.name} added.`); await load(); });
    load().catch(fail);
  }

  // ----- Services -----
  function pageServices() {
    const box = $('services');
    const statuses = root.dataset.statuses.split(',');
    let clients = {};
    let servers = null;
    async function lookups() {
      const list = await api('GET', '/api/v1/clients');
      clients = Object.fromEntries(list.clients.map((c) => [c.id, c.name]));
      $('add-service-client').replaceChildren(...list.clients.map((c) => h('option', { value: c.id }, c.name)));
      try {
        const s = await api('GET', '/api/v1/servers');
        servers = Object.fromEntries(s.servers.map((x) => [x.id, x.name]));
        $('add-service-server').replaceChildren(...s.servers.map((x) => h('option', { value: x.id }, x.name)));
      } catch {
        // Without manage_servers: the server's id.
        $('add-service-server').replaceWith(h('input', {
          id: 'add-service-server', name: 'server_id', type: 'number', min: 1, 'data-type': 'number',
        }));
      }
    }
    async function load() {
      const list = await api('GET', '/api/v1/services');
      if (!list.services.length) { fill(box, h('p', {}, 'No services yet.')); return; }
      fill(box, table('Services', ['Domain', 'User name', 'Client', 'Server', 'Status', 'Actions'],
        list.services.map((s) => h('tr', {},
          h('td', {}, s.domain),
          h('td', {}, s.username || '—'),
          h('td', {}, clients[s.client_id] ?? `Client ${s.client_id}`),
          h('td', {}, servers?.[s.server_id] ?? `Server ${s.server_id}`),
          h('td', {}, h('select', {
            'aria-label': `Status of ${s.domain}`,
            onchange: async (e) => {
              try {
                await api('PATCH', `/api/v1/services/${s.id}`, { status: e.target.value });
                say(`${s.domain} is now ${e.target.value}.`);
              } catch (err) { fail(err); }
              await load().catch(fail);
            },
          }, statuses.map((st) => h('option', { value: st, selected: st === s.status }, st)))),
          h('td', {}, actionButton('Rotate credential', async () => {
            const r = await api('POST', `/api/v1/services/${s.id}/credential`, {});
            say(`The single sign-on credential of ${s.domain} is now version ${r.credential_version}; the old one stopped working.`);
          }, { 'aria-label': `Rotate the credential of ${s.domain}` }))))));
    }
    bindForm($('add-service'), async (s, form) => { form.reset(); say(`${s.domain} added.`); await load(); });
    lookups().then(load).catch(fail);
  }

  // ----- Plugins -----
  function pagePlugins() {
    const box = $('plugins');
    async function load() {
      const list = await api('GET', '/api/v1/plugins');
      if (!list.plugins.length) { fill(box, h('p', {}, 'No plugins installed.')); return; }
      const canary = h('input', { id: 'canary-server', type: 'number', min: 1 });
      fill(box,
        h('div', { class: 'field' }, h('label', { for: 'canary-server' }, 'Canary server for activations (optional)'), canary),
        table('Plugin versions', ['Application', 'Version', 'State', 'Signed by', 'Installed', 'May send', 'Actions'],
          list.plugins.map((p) => h('tr', {},
            h('td', {}, p.application, h('div', { class: 'help' }, p.name)),
            h('td', {}, p.version, h('div', { class: 'help digest' }, p.digest)),
            h('td', {}, h('span', { class: `state state-${p.state}` }, p.state),
              p.last_error ? h('div', { class: 'refused' }, p.last_error) : null),
            h('td', {}, p.signed_by ?? '—'),
            h('td', {}, when(p.installed_at)),
            h('td', {}, p.allowed_requests
              ? h('ul', { class: 'compact' }, p.allowed_requests.map((r) => h('li', {}, `${r.method.toUpperCase()} ${r.path}`, r.calls ? ` (${r.calls.names.join(', ')})` : '')))
              : '—'),
            h('td', {},
              p.active
                ? actionButton('Roll back', async () => {
                  await api('POST', `/api/v1/plugins/${encodeURIComponent(p.name)}/rollback`);
                  say(`${p.name} rolled back.`);
                  await load();
                }, { 'aria-label': `Roll back ${p.name}` })
                : actionButton('Activate', async () => {
                  const body = canary.value ? { canary_server_id: Number(canary.value) } : undefined;
                  await api('POST', `/api/v1/plugins/${encodeURIComponent(p.name)}/versions/${encodeURIComponent(p.version)}/activate`, body);
                  say(`${p.name} ${p.version} is active.`);
                  await load();
                }, { 'aria-label': `Activate ${p.name} ${p.version}` }))))));
    }
    $('install-plugin').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      clearErrors(form);
      const file = $('plugin-file').files[0];
      if (!file) { form.querySelector('[data-error-for="file"]').textContent = 'Choose a .wasm file.'; return; }
      const signature = $('plugin-signature').value.trim();
      try {
        const p = await api('POST', '/api/v1/plugins', file, signature ? { 'X-Panelink-Signature': signature } : {});
        form.reset();
        say(`${p.name} ${p.version} installed (staged): activate it to use it.`);
        await load();
      } catch (e) { fail(e); }
    });
    load().catch(fail);
  }

  // ----- Admins, roles, tokens, audit -----
  function pageAdmins() {
    const self = Number(root.dataset.self);
    let roles = [];
    function showSecret(text, token) {
      const box = $('secret-output');
      box.hidden = false;
      box.replaceChildren(h('p', {}, text), h('p', {}, h('code', { class: 'secret' }, token)),
        h('p', { class: 'help' }, 'Copy it now: it is not shown again.'),
        h('button', { type: 'button', onclick: () => { box.hidden = true; box.replaceChildren(); } }, 'Done'));
    }
    async function loadRoles() {
      roles = (await api('GET', '/api/v1/roles')).roles;
      $('add-admin-role').replaceChildren(...roles.map((r) => h('option', { value: r.name }, r.name)));
      fill($('roles'), table('Roles', ['Role', 'Permissions'], roles.map((r) => h('tr', {},
        h('td', {}, r.name, r.builtin ? ' (built in)' : ''), h('td', {}, r.permissions.join(', '))))));
    }
    async function loadAdmins() {
      const list = await api('GET', '/api/v1/admins');
      fill($('admins'), table('Admins', ['E-mail', 'Role', 'Active', 'Actions'], list.admins.map((a) => h('tr', {},
        h('td', {}, a.email, a.id === self ? ' (you)' : ''),
        h('td', {}, h('select', {
          'aria-label': `Role of ${a.email}`, disabled: a.id === self,
          onchange: async (e) => {
            try {
              await api('PATCH', `/api/v1/admins/${a.id}`, { role: e.target.value });
              say(`${a.email} now holds ${e.target.value}.`);
            } catch (err) { fail(err); }
            await refresh();
          },
        }, roles.map((r) => h('option', { value: r.name, selected: r.name === a.role }, r.name)))),
        h('td', {}, a.active ? 'yes' : 'no'),
        h('td', { class: 'actions' },
          h('button', { type: 'button', onclick: () => tokens(a) }, `Tokens of ${a.email}`),
          a.id === self ? null : actionButton(a.active ? 'Deactivate' : 'Activate', async () => {
            await api('PATCH', `/api/v1/admins/${a.id}`, { active: !a.active });
            say(`${a.email} ${a.active ? 'deactivated' : 'activated'}.`);
            await refresh();
          }, { 'aria-label': `${a.active ? 'Deactivate' : 'Activate'} ${a.email}` }),
          a.id === self ? null : confirmButton('Remove', `Really remove ${a.email}?`, async () => {
            await api('DELETE', `/api/v1/admins/${a.id}`);
            say(`${a.email} removed.`);
            await refresh();
          }))))));
    }
    async function tokens(a) {
      const list = await api('GET', `/api/v1/admins/${a.id}/tokens`);
      $('tokens-section').hidden = false;
      $('tokens-heading').textContent = `API tokens of ${a.email}`;
      fill($('tokens'),
        table('Tokens', ['Token', 'Issued', 'Expires', 'Last used', 'Actions'], list.tokens.map((t) => h('tr', {},
          h('td', {}, `#${t.id}`, t.expired ? ' (expired)' : ''),
          h('td', {}, when(t.created_at)), h('td', {}, t.expires_at ? when(t.expires_at) : 'never'),
          h('td', {}, t.last_used_at ? when(t.last_used_at) : 'never'),
          h('td', { class: 'actions' },
            actionButton('Rotate', async () => {
              const r = await api('POST', `/api/v1/admins/${a.id}/tokens/${t.id}/rotate`);
              showSecret(`Token #${t.id} of ${a.email} was replaced by #${r.id}:`, r.token);
              await tokens(a);
            }, { 'aria-label': `Rotate token ${t.id}` }),
            confirmButton('Revoke', `Really revoke #${t.id}?`, async () => {
              await api('DELETE', `/api/v1/admins/${a.id}/tokens/${t.id}`);
              say(`Token #${t.id} revoked.`);
              await tokens(a);
            }))))),
        actionButton(`Issue a token for ${a.email}`, async () => {
          const r = await api('POST', `/api/v1/admins/${a.id}/tokens`);
          showSecret(`New token #${r.id} for ${a.email}:`, r.token);
          await tokens(a);
        }));
      $('tokens-heading').focus();
    }
    async function loadAudit() {
      const log = await api('GET', '/api/v1/audit?limit=50');
      fill($('audit'), table('Audit log', ['Time', 'Actor', 'Action', 'Target', 'Detail'], log.entries.map((e) => h('tr', {},
        h('td', {}, when(e.at)), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, e.target), h('td', {}, e.detail)))));
    }
    async function refresh() {
      await loadRoles();
      await loadAdmins();
      await loadAudit();
    }
    bindForm($('add-admin'), async (a, form) => {
      form.reset();
      showSecret(`${a.email} added with the role ${a.role}. Their API token:`, a.token);
      await refresh();
    });
    bindForm($('add-role'), async (r, form) => { form.reset(); say(`Role ${r.name} added.`); await refresh(); });
    refresh().catch(fail);
  }

  const pages = {
    applications: pageApplications,
    configure: pageConfigure,
    log: pageLog,
    servers: pageServers,
    import: pageImport,
    clients: pageClients,
    services: pageServices,
    plugins: pagePlugins,
    admins: pageAdmins,
  };
  pages[root.dataset.page]?.();
})();
