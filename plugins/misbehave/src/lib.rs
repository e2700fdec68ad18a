//! A deliberately misbehaving plugin component, for the host's sandbox tests.
//!
//! `provision` picks its behaviour from the first account's user name:
//!
//! | user name     | behaviour |
//! |---------------|-----------|
//! | `loop`        | spins forever without calling the host |
//! | `alloc`       | allocates 1 MiB blocks without end, touching every page |
//! | `trap`        | panics, which traps the component |
//! | `escape`      | sends a request to `http://example.invalid:80/` (not the server) |
//! | `escape-port` | sends a request to the server's host on another port |
//! | `sleep-host`  | sends a legitimate request to the server, then answers like `anything else` |
//! | `send`        | POSTs the first account's `credential.subscriber-id` as a form body to the path (and query) in its `domain`, on the server |
//! | `sleep`       | sleeps through WASI's monotonic clock for ever |
//! | `host-calls`  | writes 10,000 log lines (10,000 calls of the `log` import), then behaves |
//! | `clock-calls` | reads WASI's monotonic clock 1,000,000 times, then behaves |
//! | anything else | behaves: one outcome per account, with no results |
//!
//! It declares two allowed requests: `GET /json-api/version` and `POST /json-api/batch` carrying
//! `create_integration_group` and `create_integration_link` commands.
//!
//! When the host lets an escape through, `provision` still answers, with the status it got as
//! the first account's error, so a test can see the escape was not stopped. When the host turns
//! it down with an `http` error instead of ending the call, `provision` fails with
//! `plugin-error::invalid-input` carrying that error.
//!
//! `check-server` sleeps like `sleep` when the server's user name is `sleep`, and otherwise
//! answers supported without calling the host; `deprovision` and `list-links` behave. Only compiled for `wasm32`: natively this crate is empty.

#[cfg(target_arch = "wasm32")]
mod component;
