// Playwright drives Debian's Chromium (/usr/bin/chromium), headless. `cargo xtask browser-test`
// and `cargo xtask screenshots` start the demo's setup first and pass its ready file in
// PANELINK_DEMO; run through them, not on their own.
const { defineConfig } = require('@playwright/test');

module.exports = defineConfig({
  testDir: '.',
  // One demo host serves every test, which change its state in turn.
  workers: 1,
  fullyParallel: false,
  timeout: 120_000,
  expect: { timeout: 30_000 },
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    headless: true,
    viewport: { width: 1280, height: 900 },
    launchOptions: {
      executablePath: process.env.PANELINK_CHROMIUM || '/usr/bin/chromium',
      // Root (CI) cannot use Chromium's sandbox.
      args: ['--no-sandbox'],
    },
    trace: 'retain-on-failure',
  },
  projects: [
    { name: 'console', testMatch: /console\.spec\.js$/ },
    { name: 'screenshots', testMatch: /screenshots\.spec\.js$/ },
  ],
});
