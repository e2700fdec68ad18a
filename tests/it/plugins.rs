//! The real cPanel and WP Squared components, in the real runtime, against panel-sim.

use std::collections::BTreeSet;

use panel_sim::{FaultKind, PanelSim, Profile, SimConfig, SimHandle};
use panelink::adapter::{
    AccountWork, Credential, Description, LinkTemplate, Operation, Secret, ServerTarget, Settings,
};
use panelink::runtime::{Error, Runtime};
use panelink_tests::{load, runtime_config};

const PUBLIC_URL: &str = "https://billing.example";

fn runtime() -> Runtime {
    Runtime::new(runtime_config()).expect("runtime")
}

fn target(sim: &SimHandle) -> ServerTarget {
    ServerTarget {
        hostname: sim.addr().ip().to_string(),
        port: sim.addr().port(),
        secure: false,
        username: sim.api_user(),
        api_token: Secret::new(sim.api_token()),
    }
}

fn app_name(scope: &str) -> String {
    format!("PANELINK_{}", scope.replace(':', "_"))
}

/// The call's link templates: every link but `skip`, custom labels, the host's URLs.
fn pushes(desc: &Description, skip: &[&str]) -> Vec<LinkTemplate> {
    desc.links
        .iter()
        .filter(|l| !skip.contains(&l.scope.as_str()))
        .enumerate()
        .map(|(i, l)| LinkTemplate {
            scope: l.scope.clone(),
            label: format!("{} (custom)", l.default_label),
            order: i as u32 + 1,
            token_url: format!(
                "{PUBLIC_URL}/oauth/token?scope=clientarea%3Asso+{}&module={}",
                l.scope.replace(':', "%3A"),
                desc.id
            ),
            url: format!(
                "{PUBLIC_URL}/portal{}",
                l.destination.replace("{service_id}", "{service-id}")
            ),
        })
        .collect()
}

/// An account of service 7 getting `links` (by scope) and losing `remove`.
fn work(user: &str, links: Vec<LinkTemplate>, remove: Vec<String>) -> AccountWork {
    AccountWork {
        username: user.into(),
        domain: format!("{user}.example"),
        service_id: "7".into(),
        credential: Credential::Token {
            subscriber_id: format!("sub-{user}"),
            secret: Secret::new(format!("secret-{user}")),
        },
        ensure_group: true,
        links: links.into_iter().map(|l| l.scope).collect(),
        remove,
    }
}

async fn sim(profile: Profile, accounts: usize) -> SimHandle {
    PanelSim::start(SimConfig::new().profile(profile).sample_accounts(accounts))
        .await
        .expect("panel-sim")
}

#[tokio::test]
async fn both_plugins_describe_the_fourteen_links() {
    let rt = runtime();
    for (id, name) in [("cpanel", "cPanel"), ("wpsquared", "WP Squared")] {
        let plugin = load(&rt, id).await;
        let d = &plugin.description;
        assert_eq!((d.id.as_str(), d.name.as_str()), (id, name));
        assert_eq!(d.contract_version, panelink::runtime::CONTRACT_VERSION);
        assert_eq!(d.links.len(), 14);
        let groups: Vec<_> = d.links.iter().map(|l| l.group.as_str()).collect();
        assert_eq!(groups.iter().filter(|g| **g == "ordering").count(), 3);
        assert_eq!(groups.iter().filter(|g| **g == "support").count(), 6);
        assert_eq!(groups.iter().filter(|g| **g == "account").count(), 5);
        assert_eq!(d.links[0].scope, "clientarea:upgrade");
        assert_eq!(d.links[0].implements.as_deref(), Some("upgrade"));
        assert_eq!(d.links[1].implements, None);
        assert!(d.links.iter().all(|l| l.icon.is_some()));
        assert_eq!(
            d.sign_in,
            panelink::adapter::SignInStyle::TokenExchange,
            "{id}"
        );
        assert_eq!(plugin.contract(), "0.2.0");
        assert_eq!(d.links[13].scope, "clientarea:invoices");
        assert_eq!(d.links[13].default_label, "View Invoice History");
        assert!(plugin.digest.starts_with("sha256:"));
    }
}

#[tokio::test]
async fn provisioning_gives_every_account_exactly_the_group_and_links() {
    let rt = runtime();
    let sim = sim(Profile::Standard, 25).await;
    let plugin = load(&rt, "cpanel").await;
    let links = pushes(&plugin.description, &[]);
    let users: Vec<String> = sim.accounts().keys().cloned().collect();
    let batch: Vec<_> = users
        .iter()
        .map(|u| work(u, links.clone(), vec![]))
        .collect();
    let settings = Settings::default();
    let out = plugin
        .provision(&target(&sim), &settings, links.clone(), batch.clone())
        .await
        .expect("provision");
    assert_eq!(out.value.len(), 25);
    for (outcome, user) in out.value.iter().zip(&users) {
        assert_eq!(&outcome.username, user);
        assert_eq!(outcome.errors().count(), 0, "{outcome:?}");
        assert_eq!(outcome.results.len(), 15);
        assert_eq!(outcome.results[0].op, Operation::EnsureGroup);
    }
    // 25 accounts × (1 group + 14 links): at most 300 commands per request (the plugin's
    // limit), and an account's 15 commands stay in one request, so 20 accounts a request.
    assert_eq!(
        plugin.description.limits.operations_per_request, 300,
        "the plugin's own limit"
    );
    assert_eq!(sim.calls("batch"), 25_u64.div_ceil(300 / 15));
    assert_eq!(sim.calls("create_integration_link"), 25 * 14);

    for user in &users {
        let groups = sim.groups(user);
        assert_eq!(groups.len(), 1);
        let group = &groups["panelink"];
        assert_eq!(
            (group.label.as_str(), group.order),
            ("Billing & Support", 1)
        );
        let panel_links = sim.links(user);
        let expected: BTreeSet<_> = links.iter().map(|l| app_name(&l.scope)).collect();
        assert_eq!(
            panel_links.keys().cloned().collect::<BTreeSet<_>>(),
            expected
        );
        for (push, spec) in links.iter().zip(&plugin.description.links) {
            let link = &panel_links[&app_name(&push.scope)];
            let implements = spec
                .implements
                .clone()
                .unwrap_or_else(|| app_name(&push.scope));
            assert_eq!(link.get("label"), Some(push.label.as_str()));
            assert_eq!(link.get("order"), Some(push.order.to_string().as_str()));
            assert_eq!(link.get("group_id"), Some("panelink"));
            assert_eq!(link.get("implements"), Some(implements.as_str()));
            assert_eq!(
                link.get("subscriber_unique_id"),
                Some(format!("sub-{user}").as_str())
            );
            assert_eq!(link.get("token"), Some(format!("secret-{user}").as_str()));
            assert_eq!(
                link.get("autologin_token_url"),
                Some(push.token_url.as_str())
            );
            assert_eq!(link.get("url"), Some(push.url_for("7", None).as_str()));
            use base64::Engine as _;
            assert_eq!(
                link.get("base64_png_image"),
                Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(spec.icon.as_deref().expect("icon"))
                        .as_str()
                )
            );
        }
    }
    // No secret of the account and no API token in what the plugin logged.
    for line in &out.logs {
        assert!(!line.message.contains("secret-"), "{line:?}");
        assert!(!line.message.contains(&sim.api_token()), "{line:?}");
    }
}

#[tokio::test]
async fn disabled_links_are_removed_and_deprovision_clears_everything() {
    let rt = runtime();
    let sim = sim(Profile::Standard, 3).await;
    let plugin = load(&rt, "cpanel").await;
    let t = target(&sim);
    let s = Settings::default();
    let users: Vec<String> = sim.accounts().keys().cloned().collect();
    let all = pushes(&plugin.description, &[]);
    let batch: Vec<_> = users.iter().map(|u| work(u, all.clone(), vec![])).collect();
    plugin
        .provision(&t, &s, all.clone(), batch.clone())
        .await
        .expect("provision");

    let disabled = ["clientarea:emails", "clientarea:downloads"];
    let batch: Vec<_> = users
        .iter()
        .map(|u| {
            let mut w = work(
                u,
                vec![],
                disabled.iter().map(|s| (*s).to_owned()).collect(),
            );
            w.ensure_group = false;
            w
        })
        .collect();
    sim.reset_counters();
    let out = plugin
        .provision(&t, &s, all.clone(), batch.clone())
        .await
        .expect("disable");
    assert!(out.value.iter().all(|o| o.errors().count() == 0));
    assert_eq!(sim.calls("remove_integration_link"), 6);
    assert_eq!(sim.calls("create_integration_link"), 0);
    for user in &users {
        let apps: BTreeSet<_> = sim.links(user).keys().cloned().collect();
        assert_eq!(apps.len(), 12);
        for scope in disabled {
            assert!(!apps.contains(&app_name(scope)));
        }
        let listed = plugin.list_links(&t, &s, user).await.expect("list").value;
        let scopes: BTreeSet<_> = listed.iter().filter_map(|l| l.scope.clone()).collect();
        assert_eq!(scopes.len(), 12);
        assert!(!scopes.contains("clientarea:emails"));
    }

    let out = plugin
        .deprovision(&t, &s, &users)
        .await
        .expect("deprovision");
    assert!(out.value.iter().all(|o| o.errors().count() == 0), "{out:?}");
    for user in &users {
        assert!(sim.links(user).is_empty());
        assert!(sim.groups(user).is_empty());
    }
}

#[tokio::test]
async fn unknown_and_empty_accounts_fail_alone_with_the_panels_words() {
    let rt = runtime();
    let sim = sim(Profile::Standard, 2).await;
    let plugin = load(&rt, "cpanel").await;
    let links = pushes(&plugin.description, &[]);
    let users: Vec<String> = sim.accounts().keys().cloned().collect();
    let mut batch: Vec<_> = users
        .iter()
        .map(|u| work(u, links.clone(), vec![]))
        .collect();
    batch.insert(1, work("bob", links.clone(), vec![]));
    let mut nameless = work("", links.clone(), vec![]);
    nameless.domain = "nameless.example".into();
    batch.push(nameless);

    let out = plugin
        .provision(&target(&sim), &Settings::default(), links, batch.clone())
        .await
        .expect("provision")
        .value;
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].errors().count(), 0);
    assert_eq!(out[2].errors().count(), 0);
    let bob: Vec<_> = out[1].errors().collect();
    assert!(!bob.is_empty());
    assert!(
        bob.iter()
            .all(|e| *e == "You do not have a user named “bob”."),
        "{bob:?}"
    );
    let nameless: Vec<_> = out[3].errors().collect();
    assert_eq!(nameless, ["nameless.example: username cannot be empty."]);
    for user in &users {
        assert_eq!(sim.links(user).len(), 14);
    }
}

#[tokio::test]
async fn support_checks_follow_profile_and_version() {
    let rt = runtime();
    let cpanel = load(&rt, "cpanel").await;
    let wp2 = load(&rt, "wpsquared").await;
    let standard = sim(Profile::Standard, 0).await;
    let wp2_server = sim(Profile::Wp2, 0).await;
    let old = PanelSim::start(SimConfig::new().old_version())
        .await
        .expect("sim");

    let check = |p: &std::sync::Arc<panelink::runtime::Plugin>, s: &SimHandle| {
        let p = p.clone();
        let t = target(s);
        async move { p.check_server(&t).await.expect("check").value }
    };
    assert!(check(&cpanel, &standard).await.supported);
    assert!(check(&wp2, &wp2_server).await.supported);
    let refused = check(&wp2, &standard).await;
    assert!(!refused.supported);
    assert!(
        refused.detail.contains("WP2") || refused.detail.contains("WP Squared"),
        "{}",
        refused.detail
    );
    let refused = check(&cpanel, &wp2_server).await;
    assert!(!refused.supported, "{}", refused.detail);
    let refused = check(&cpanel, &old).await;
    assert!(!refused.supported);
    assert!(refused.detail.contains("54"), "{}", refused.detail);
}

#[tokio::test]
async fn a_wrong_api_token_is_a_panel_error_and_a_dead_server_is_transient() {
    let rt = runtime();
    let sim = sim(Profile::Standard, 1).await;
    let plugin = load(&rt, "cpanel").await;
    let mut t = target(&sim);
    t.api_token = Secret::new("WRONGTOKEN");
    let err = plugin.check_server(&t).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Plugin {
                error: panelink::adapter::PluginError::Panel(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("WRONGTOKEN"));

    sim.set_down(true);
    let err = plugin.check_server(&target(&sim)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn http_500s_timeouts_and_dropped_connections_are_transient() {
    let mut config = runtime_config();
    config.http.request_timeout = std::time::Duration::from_millis(300);
    let rt = Runtime::new(config).expect("runtime");
    let sim = sim(Profile::Standard, 1).await;
    sim.set_hang_for(std::time::Duration::from_secs(10));
    let plugin = load(&rt, "cpanel").await;
    for kind in [
        FaultKind::Http500,
        FaultKind::DropConnection,
        FaultKind::Timeout,
    ] {
        sim.inject_faults(kind, 1);
        let err = plugin.check_server(&target(&sim)).await.unwrap_err();
        assert!(err.is_transient(), "{kind:?}: {err:?}");
        sim.clear_injected_faults();
    }
}

/// With `max_in_flight_per_server` = 1, calls to one server made at once send their requests
/// one after another (the panel answers each slowly enough that they would overlap); every call
/// still succeeds. Without the limit the same calls overlap.
#[tokio::test]
async fn requests_to_one_server_take_turns_when_limited() {
    for (limit, overlap) in [(Some(1), false), (None, true)] {
        let mut config = runtime_config();
        config.http.max_in_flight_per_server = limit;
        let rt = Runtime::new(config).expect("runtime");
        let sim = sim(Profile::Standard, 4).await;
        sim.set_request_latency(std::time::Duration::from_millis(50));
        let plugin = load(&rt, "cpanel").await;
        let links = pushes(&plugin.description, &[]);
        let calls = sim.accounts().into_keys().map(|user| {
            let (plugin, sim, links) = (&plugin, &sim, links.clone());
            async move {
                plugin
                    .provision(
                        &target(sim),
                        &Settings::default(),
                        links.clone(),
                        [work(&user, links, vec![])],
                    )
                    .await
                    .expect("provision")
            }
        });
        let outs = futures::future::join_all(calls).await;
        assert!(
            outs.iter()
                .all(|o| o.value.iter().all(|a| a.errors().count() == 0))
        );
        let counters = sim.counters();
        assert_eq!(
            counters.max_in_flight > 1,
            overlap,
            "{limit:?}: {counters:?}"
        );
    }
}

/// Both plugins declare exactly the WHM functions they call: the five direct calls and `batch`
/// with the four integration commands, all POSTed; a full round (check, provision with removals,
/// list links, list accounts, deprovision) through the gate calls every one of them and nothing
/// else.
#[tokio::test]
async fn the_plugins_declare_exactly_the_whm_functions_they_call() {
    use panelink::adapter::{HttpMethod, Tunnel};

    let direct = [
        "applist",
        "version",
        "get_current_profile",
        "list_integration_links",
        "listaccts",
    ];
    let batched = [
        "create_integration_group",
        "create_integration_link",
        "remove_integration_link",
        "remove_integration_group",
    ];
    let rt = runtime();
    for (id, profile) in [("cpanel", Profile::Standard), ("wpsquared", Profile::Wp2)] {
        let plugin = load(&rt, id).await;
        let declared = &plugin.description.allowed_requests;
        assert!(declared.iter().all(|r| r.method == HttpMethod::Post));
        let mut paths: Vec<&str> = declared.iter().map(|r| r.path.as_str()).collect();
        paths.sort_unstable();
        let mut want: Vec<String> = direct
            .iter()
            .chain(["batch"].iter())
            .map(|f| format!("/json-api/{f}"))
            .collect();
        want.sort_unstable();
        assert_eq!(paths, want, "{id}");
        for request in declared {
            match &request.calls {
                None => assert_ne!(request.path, "/json-api/batch"),
                Some(Tunnel::WhmBatch(functions)) => assert_eq!(functions, &batched, "{id}"),
                Some(other) => panic!("{id}: {other:?}"),
            }
        }

        let sim = sim(profile, 2).await;
        let t = target(&sim);
        let s = Settings::default();
        let users: Vec<String> = sim.accounts().keys().cloned().collect();
        assert!(
            plugin
                .check_server(&t)
                .await
                .expect("check")
                .value
                .supported
        );
        let links = pushes(&plugin.description, &[]);
        let keep = links.len() - 1;
        let mut batch = vec![work(&users[0], links.clone(), vec![])];
        batch.push(work(
            &users[1],
            links[..keep].to_vec(),
            vec![links[keep].scope.clone()],
        ));
        plugin
            .provision(&t, &s, links.clone(), batch)
            .await
            .expect("provision");
        plugin.list_links(&t, &s, &users[0]).await.expect("list");
        plugin.list_accounts(&t).await.expect("list accounts");
        plugin
            .deprovision(&t, &s, &users)
            .await
            .expect("deprovision");
        let called: BTreeSet<String> = sim.counters().calls.into_keys().collect();
        let expected: BTreeSet<String> = direct
            .iter()
            .chain(&batched)
            .chain(["batch"].iter())
            .map(|f| (*f).to_owned())
            .collect();
        assert_eq!(called, expected, "{id}");
    }
}

// ---------------------------------------------------------------------------------------------
// Installing third-party plugins through the admin API: signatures, staging, explicit and
// audited activation, the canary, and the failure policy. Every one runs on SQLite and on
// PostgreSQL.

mod trust {
    use std::time::Duration;

    use axum::http::StatusCode;
    use panelink::api::Limits;
    use panelink::catalog::Policy;
    use panelink::signing::{self, PrivateKey, TrustedKey, TrustedKeys};
    use panelink_tests::Specimen;
    use serde_json::{Value, json};

    use crate::harness::{Answer, Backend, Engine, TestApp, on_both};

    on_both!(
        refused_uploads_say_why_and_store_nothing,
        uploads_are_staged_and_activation_is_explicit_and_audited,
        a_failing_canary_refuses_the_activation,
        failing_versions_are_flagged_and_rolled_back,
        signed_upload_over_real_http,
    );

    /// A vendor's key and the policy trusting it (as "acme").
    fn vendor() -> (PrivateKey, Policy) {
        let key = PrivateKey::generate();
        let policy = Policy {
            trusted_keys: TrustedKeys::new(vec![TrustedKey::new("acme", key.public()).unwrap()])
                .unwrap(),
            ..Policy::default()
        };
        (key, policy)
    }

    /// `ed25519=…` by `key` over the signed message of `bytes`, a component of `application`
    /// at `version`.
    fn sign(key: &PrivateKey, application: &str, version: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(sha256(bytes)));
        key.sign(signing::message(application, version, &digest).as_bytes())
            .to_string()
    }

    fn sha256(bytes: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        sha2::Sha256::digest(bytes).to_vec()
    }

    /// A signed specimen upload's signature.
    fn signed(key: &PrivateKey, specimen: &Specimen) -> (Vec<u8>, String) {
        let bytes = specimen.bytes();
        let signature = sign(key, &specimen.id, &specimen.version, &bytes);
        (bytes, signature)
    }

    async fn upload(app: &TestApp, bytes: Vec<u8>, signature: Option<&str>) -> Answer {
        let mut request =
            TestApp::request("POST", "/api/v1/plugins", Some(&app.token), Some(bytes));
        request
            .headers_mut()
            .insert("content-type", "application/wasm".parse().unwrap());
        if let Some(signature) = signature {
            request
                .headers_mut()
                .insert("x-panelink-signature", signature.parse().unwrap());
        }
        app.send(request).await
    }

    async fn activate(app: &TestApp, name: &str, version: &str, body: Option<Value>) -> Answer {
        app.call(
            "POST",
            &format!("/api/v1/plugins/{name}/versions/{version}/activate"),
            body,
        )
        .await
    }

    /// The listed version of `name`, by version.
    async fn listed(app: &TestApp, name: &str, version: &str) -> Value {
        let list = app.call("GET", "/api/v1/plugins", None).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        list.json["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name && p["version"] == version)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Audit entries (newest first) as (actor, action, target, detail).
    async fn audit(app: &TestApp) -> Vec<(String, String, String, String)> {
        let audit = app.call("GET", "/api/v1/audit?limit=1000", None).await;
        assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
        audit.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
                (s("actor"), s("action"), s("target"), s("detail"))
            })
            .collect()
    }

    fn active_version(app: &TestApp, name: &str) -> Option<String> {
        app.state
            .catalog()
            .plugins()
            .get(name)
            .map(|p| p.version().to_owned())
    }

    async fn refused_uploads_say_why_and_store_nothing(backend: Backend) {
        let (key, policy) = vendor();
        let limits = Limits {
            max_plugin_bytes: 200_000,
            ..Limits::default()
        };
        let app = TestApp::with_policy(backend, Engine::Fake, policy, limits).await;
        // The token's first use is recorded (its last-used time); after that, reads write
        // nothing for a minute.
        assert_eq!(
            app.call("GET", "/api/v1/plugins", None).await.status,
            StatusCode::OK
        );
        let before = app.snapshot().await;
        let stranger = PrivateKey::generate();
        let good = Specimen::default();
        let (good_bytes, good_signature) = signed(&key, &good);
        let v2 = Specimen::version("2.0.0").bytes();
        let with = |f: &dyn Fn(&mut Specimen)| {
            let mut s = Specimen::default();
            f(&mut s);
            signed(&key, &s)
        };
        let (wrong_major, wrong_major_sig) = with(&|s| s.contract = "1.0.0".into());
        let (newer_minor, newer_minor_sig) = with(&|s| s.contract = "0.9.0".into());
        let (duplicate, duplicate_sig) = with(&|s| {
            let first = s.links[0].clone();
            s.links.push(first);
        });
        let (unlabelled, unlabelled_sig) = with(&|s| s.links[1].2 = " ".into());
        let core_module = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0".to_vec();
        let mut oversized = good_bytes.clone();
        oversized.resize(200_001, 0);

        // What is sent, with which signature, and what comes back.
        type Case<'a> = (&'a str, Vec<u8>, Option<String>, StatusCode, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                "not wasm",
                b"#!/bin/sh\necho hello\n".to_vec(),
                Some(good_signature.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "not WebAssembly",
            ),
            (
                "a core module",
                core_module,
                Some(good_signature.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "core WebAssembly module, not a component",
            ),
            (
                "a wrong contract major",
                wrong_major,
                Some(wrong_major_sig),
                StatusCode::UNPROCESSABLE_ENTITY,
                "contract 1.0.0",
            ),
            (
                "a newer contract minor",
                newer_minor,
                Some(newer_minor_sig),
                StatusCode::UNPROCESSABLE_ENTITY,
                "contract 0.9.0",
            ),
            (
                "duplicate scopes",
                duplicate,
                Some(duplicate_sig),
                StatusCode::UNPROCESSABLE_ENTITY,
                "\"clientarea:invoices\" is empty or repeated",
            ),
            (
                "a link without a label",
                unlabelled,
                Some(unlabelled_sig),
                StatusCode::UNPROCESSABLE_ENTITY,
                "\"clientarea:tickets\" has no default label",
            ),
            (
                "unsigned with keys configured",
                good_bytes.clone(),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                "not signed, and this host only installs components signed by a trusted key (acme)",
            ),
            (
                "signed by an untrusted key",
                good_bytes.clone(),
                Some(sign(&stranger, "specimen", "1.0.0", &good_bytes)),
                StatusCode::UNPROCESSABLE_ENTITY,
                "does not verify with any trusted key (acme)",
            ),
            (
                "a signature of other bytes",
                v2.clone(),
                Some(good_signature.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "does not verify with any trusted key",
            ),
            (
                "a signature for another version",
                v2.clone(),
                Some(sign(&key, "specimen", "1.0.0", &v2)),
                StatusCode::UNPROCESSABLE_ENTITY,
                "does not verify with any trusted key",
            ),
            (
                "a malformed signature",
                good_bytes.clone(),
                Some("ed25519=bm90IGEgc2lnbmF0dXJl".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "not ed25519=<base64 of 64 bytes>",
            ),
            (
                "another algorithm",
                good_bytes.clone(),
                Some("rsa=AAAA".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "does not start with \"ed25519=\"",
            ),
            (
                "oversized",
                oversized,
                Some(good_signature.clone()),
                StatusCode::PAYLOAD_TOO_LARGE,
                "larger than the limit of 200000 bytes",
            ),
        ];
        for (what, bytes, signature, status, needle) in cases {
            let answer = upload(&app, bytes, signature.as_deref()).await;
            assert_eq!(answer.status, status, "{what}: {}", answer.text);
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "validation_failed"
            };
            assert_eq!(answer.code(), code, "{what}");
            let message = answer.json["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains(needle),
                "{what}: {message:?} lacks {needle:?}"
            );
        }
        assert_eq!(
            app.snapshot().await,
            before,
            "a refused upload stored something"
        );

        // The good one is accepted, staged.
        let answer = upload(&app, good_bytes, Some(&good_signature)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert_eq!(answer.json["state"], "staged");
        assert_eq!(answer.json["signed_by"], "acme");
    }

    async fn uploads_are_staged_and_activation_is_explicit_and_audited(backend: Backend) {
        let (key, policy) = vendor();
        let app = TestApp::with_policy(backend, Engine::Fake, policy, Limits::default()).await;
        let (v1, v1_sig) = signed(&key, &Specimen::version("1.0.0"));
        let (v2, v2_sig) = signed(&key, &Specimen::version("2.0.0"));

        // The first version of a new application: installed, not active, no application yet.
        let up = upload(&app, v1.clone(), Some(&v1_sig)).await;
        assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
        for (field, value) in [
            ("name", json!("specimen")),
            ("state", json!("staged")),
            ("active", json!(false)),
            ("signed_by", json!("acme")),
            ("source", json!("upload")),
            ("activated_at", Value::Null),
            ("last_error", Value::Null),
        ] {
            assert_eq!(up.json[field], value, "{field}: {}", up.text);
        }
        assert_eq!(active_version(&app, "specimen"), None);
        let app_view = app.call("GET", "/api/v1/applications/specimen", None).await;
        assert_eq!(app_view.status, StatusCode::NOT_FOUND, "{}", app_view.text);
        let again = upload(&app, v1.clone(), Some(&v1_sig)).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(again.json["state"], "staged");

        // An admin activates it: live, listed, audited with who did it.
        let on = activate(&app, "specimen", "1.0.0", None).await;
        assert_eq!(on.status, StatusCode::OK, "{}", on.text);
        assert_eq!(
            (on.json["state"].clone(), on.json["active"].clone()),
            (json!("active"), json!(true))
        );
        assert!(on.json["activated_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(active_version(&app, "specimen").as_deref(), Some("1.0.0"));
        let app_view = app.call("GET", "/api/v1/applications/specimen", None).await;
        assert_eq!(app_view.status, StatusCode::OK, "{}", app_view.text);
        let entries = audit(&app).await;
        assert!(
            entries.iter().any(
                |(actor, action, target, detail)| actor == "root@example.com"
                    && action == "plugin.activate"
                    && target == "plugin:specimen@1.0.0"
                    && detail.contains("replaces=(none)")
            ),
            "{entries:?}"
        );
        assert!(
            entries
                .iter()
                .any(|(_, action, target, detail)| action == "plugin.install"
                    && target == "plugin:specimen@1.0.0"
                    && detail.contains("signed_by=acme")),
            "{entries:?}"
        );

        // A new version waits, staged, while the old one serves.
        let up = upload(&app, v2, Some(&v2_sig)).await;
        assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
        assert_eq!(up.json["state"], "staged");
        assert_eq!(active_version(&app, "specimen").as_deref(), Some("1.0.0"));
        // An empty JSON object is an activation without canary, too.
        let on = activate(&app, "specimen", "2.0.0", Some(json!({}))).await;
        assert_eq!(on.status, StatusCode::OK, "{}", on.text);
        assert_eq!(listed(&app, "specimen", "1.0.0").await["state"], "previous");
        assert_eq!(active_version(&app, "specimen").as_deref(), Some("2.0.0"));

        let back = app
            .call("POST", "/api/v1/plugins/specimen/rollback", None)
            .await;
        assert_eq!(back.status, StatusCode::OK, "{}", back.text);
        assert_eq!(back.json["version"], "1.0.0");
        assert_eq!(listed(&app, "specimen", "2.0.0").await["state"], "previous");
        assert_eq!(active_version(&app, "specimen").as_deref(), Some("1.0.0"));
        let entries = audit(&app).await;
        assert!(
            entries.iter().any(
                |(actor, action, target, detail)| actor == "root@example.com"
                    && action == "plugin.rollback"
                    && target == "plugin:specimen@1.0.0"
                    && detail.contains("replaces=2.0.0")
            ),
            "{entries:?}"
        );

        // Unknown body fields and versions are refused.
        let bad = activate(&app, "specimen", "2.0.0", Some(json!({"canary": 1}))).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
        let none = activate(&app, "specimen", "9.9.9", None).await;
        assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);
    }

    /// A specimen server (the specimen's check never calls it).
    async fn server(app: &TestApp, module: &str) -> i64 {
        let created = app
            .call(
                "POST",
                "/api/v1/servers",
                Some(json!({
                    "name": format!("{module}-canary"), "module": module,
                    "hostname": "127.0.0.1", "port": 9, "secure": false,
                    "username": "root", "api_token": "CANARYTOKEN"
                })),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.json["id"].as_i64().unwrap()
    }

    async fn a_failing_canary_refuses_the_activation(backend: Backend) {
        let app = TestApp::new(backend).await;
        let install = |specimen: Specimen| {
            let app = &app;
            async move {
                let up = upload(app, specimen.bytes(), None).await;
                assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
            }
        };
        install(Specimen::version("1.0.0")).await;
        let on = activate(&app, "specimen", "1.0.0", None).await;
        assert_eq!(on.status, StatusCode::OK, "{}", on.text);
        let canary = server(&app, "specimen").await;
        let cpanel = server(&app, "cpanel").await;
        install(Specimen {
            check: "unsupported".into(),
            ..Specimen::version("2.0.0")
        })
        .await;
        install(Specimen {
            check: "trap".into(),
            ..Specimen::version("3.0.0")
        })
        .await;
        install(Specimen::version("4.0.0")).await;
        let before = audit(&app).await.len();

        for (version, needle) in [
            (
                "2.0.0",
                "the server is not supported: specimen does not support 127.0.0.1",
            ),
            ("3.0.0", "trapped"),
        ] {
            let refused = activate(
                &app,
                "specimen",
                version,
                Some(json!({"canary_server_id": canary})),
            )
            .await;
            assert_eq!(
                (refused.status, refused.code()),
                (StatusCode::CONFLICT, "conflict"),
                "{version}: {}",
                refused.text
            );
            let message = refused.json["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!(
                    "canary check of specimen {version} on server {canary}"
                )) && message.contains(needle)
                    && message.contains("1.0.0 stays active"),
                "{message}"
            );
            assert_eq!(active_version(&app, "specimen").as_deref(), Some("1.0.0"));
            assert_eq!(listed(&app, "specimen", "1.0.0").await["state"], "active");
            assert_eq!(listed(&app, "specimen", version).await["state"], "staged");
        }
        let entries = audit(&app).await;
        let refusals: Vec<_> = entries
            .iter()
            .filter(|(_, action, _, _)| action == "plugin.activate_refused")
            .collect();
        assert_eq!(refusals.len(), 2, "{entries:?}");
        assert!(refusals[0].3.contains("canary check"), "{refusals:?}");
        assert_eq!(entries.len(), before + 2, "only the refusals were recorded");

        // A canary that is not a server of the application is the request's fault.
        for (id, needle) in [
            (999_999, "no server has id 999999"),
            (cpanel, "is a cpanel server"),
        ] {
            let refused = activate(
                &app,
                "specimen",
                "4.0.0",
                Some(json!({"canary_server_id": id})),
            )
            .await;
            assert_eq!(
                refused.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                refused.text
            );
            let why = refused.json["error"]["fields"]["canary_server_id"]
                .as_str()
                .unwrap();
            assert!(why.contains(needle), "{why}");
        }
        // A passing canary activates, and says so in the audit log.
        let on = activate(
            &app,
            "specimen",
            "4.0.0",
            Some(json!({"canary_server_id": canary})),
        )
        .await;
        assert_eq!(on.status, StatusCode::OK, "{}", on.text);
        assert_eq!(active_version(&app, "specimen").as_deref(), Some("4.0.0"));
        assert!(
            audit(&app)
                .await
                .iter()
                .any(|(_, action, target, detail)| action == "plugin.activate"
                    && target == "plugin:specimen@4.0.0"
                    && detail.contains(&format!("canary=server:{canary}"))
                    && detail.contains("replaces=1.0.0")),
        );
    }

    /// Wait (bounded) until the listed version satisfies `done`.
    async fn wait_for(
        app: &TestApp,
        name: &str,
        version: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = listed(app, name, version).await;
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} {version} never got there: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn check(app: &TestApp, server: i64) -> Answer {
        let answer = app
            .call("POST", &format!("/api/v1/servers/{server}/check"), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer
    }

    async fn failing_versions_are_flagged_and_rolled_back(backend: Backend) {
        for auto_rollback in [true, false] {
            let policy = Policy {
                fault_threshold: 3,
                auto_rollback,
                ..Policy::default()
            };
            let app = TestApp::with_policy(backend, Engine::Fake, policy, Limits::default()).await;
            for specimen in [
                Specimen::version("1.0.0"),
                Specimen {
                    check: "trap".into(),
                    ..Specimen::version("2.0.0")
                },
            ] {
                let up = upload(&app, specimen.bytes(), None).await;
                assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
                let on = activate(&app, "specimen", &specimen.version, None).await;
                assert_eq!(on.status, StatusCode::OK, "{}", on.text);
            }
            let specimen_server = server(&app, "specimen").await;
            // Two faults do not flag; the third does.
            for _ in 0..2 {
                let answer = check(&app, specimen_server).await;
                assert!(answer.text.contains("trapped"), "{}", answer.text);
            }
            assert_eq!(listed(&app, "specimen", "2.0.0").await["state"], "active");
            check(&app, specimen_server).await;
            let flagged = wait_for(&app, "specimen", "2.0.0", |v| v["state"] == "failed").await;
            let error = flagged["last_error"].as_str().unwrap();
            assert!(
                error.contains("3 calls in a row failed") && error.contains("trapped"),
                "{error}"
            );
            assert!(flagged["failed_at"].as_str().unwrap().ends_with('Z'));
            let entries = audit(&app).await;
            assert!(
                entries
                    .iter()
                    .any(|(actor, action, target, detail)| actor == "system"
                        && action == "plugin.flag"
                        && target == "plugin:specimen@2.0.0"
                        && detail.contains("trapped")),
                "{entries:?}"
            );
            if auto_rollback {
                let back = wait_for(&app, "specimen", "1.0.0", |v| v["active"] == true).await;
                assert_eq!(back["state"], "active");
                // The rollback is recorded, then swapped in (the listing may show it first).
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while active_version(&app, "specimen").as_deref() != Some("1.0.0") {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the rolled-back version never ran"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(listed(&app, "specimen", "2.0.0").await["active"], false);
                assert!(
                    audit(&app)
                        .await
                        .iter()
                        .any(|(actor, action, target, detail)| actor == "system"
                            && action == "plugin.rollback"
                            && target == "plugin:specimen@1.0.0"
                            && detail.contains("automatic=true")
                            && detail.contains("replaces=2.0.0")),
                );
                // The check works again, on the good version.
                let answer = check(&app, specimen_server).await;
                assert_eq!(answer.json["supported"], true, "{}", answer.text);

                // With nothing to go back to, the flagged version keeps serving, and the
                // failed rollback is audited.
                let lonely = Specimen {
                    id: "lonely".into(),
                    check: "trap".into(),
                    ..Specimen::default()
                };
                let up = upload(&app, lonely.bytes(), None).await;
                assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
                let on = activate(&app, "lonely", "1.0.0", None).await;
                assert_eq!(on.status, StatusCode::OK, "{}", on.text);
                let lonely_server = server(&app, "lonely").await;
                for _ in 0..3 {
                    check(&app, lonely_server).await;
                }
                let flagged = wait_for(&app, "lonely", "1.0.0", |v| v["state"] == "failed").await;
                assert_eq!(flagged["active"], true);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while !audit(&app)
                    .await
                    .iter()
                    .any(|(actor, action, target, detail)| {
                        actor == "system"
                            && action == "plugin.rollback_failed"
                            && target == "plugin:lonely@1.0.0"
                            && detail.contains("no earlier good version")
                    })
                {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no rollback_failed entry"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(active_version(&app, "lonely").as_deref(), Some("1.0.0"));
            } else {
                // Flagged, yet serving until an admin acts; a flagged version is no rollback
                // target, and activating it again clears the flag.
                assert_eq!(flagged["active"], true);
                assert_eq!(active_version(&app, "specimen").as_deref(), Some("2.0.0"));
                let back = app
                    .call("POST", "/api/v1/plugins/specimen/rollback", None)
                    .await;
                assert_eq!(back.status, StatusCode::OK, "{}", back.text);
                assert_eq!(back.json["version"], "1.0.0");
                let none = app
                    .call("POST", "/api/v1/plugins/specimen/rollback", None)
                    .await;
                assert_eq!(none.status, StatusCode::CONFLICT, "{}", none.text);
                let again = activate(&app, "specimen", "2.0.0", None).await;
                assert_eq!(again.status, StatusCode::OK, "{}", again.text);
                assert_eq!(
                    (
                        again.json["state"].clone(),
                        again.json["last_error"].clone()
                    ),
                    (json!("active"), Value::Null)
                );
            }
        }
    }

    /// The whole path over real HTTP: `trusted_keys` in the configuration, `panelink serve`'s
    /// start-up (in-process), an unsigned upload refused, a signed one staged, then activated.
    async fn signed_upload_over_real_http(backend: Backend) {
        let key = PrivateKey::generate();
        let test_db = crate::harness::TestDb::new(backend).await;
        let data = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let config = panelink::config::Config::resolve([panelink::config::Layer {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(test_db.url.clone()),
            data_dir: Some(data.path().to_path_buf()),
            plugin_dir: Some(empty.path().to_path_buf()),
            trusted_keys: Some(vec![panelink::config::TrustedKeyEntry {
                name: "acme".into(),
                public_key: key.public().to_string(),
            }]),
            ..Default::default()
        }])
        .unwrap();
        let options = panelink::boot::Options {
            runtime: panelink_tests::runtime_config(),
            ..Default::default()
        };
        let host = panelink::boot::Host::start(config, options).await.unwrap();
        let base = format!("http://{}", host.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(host.run(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let db = panelink::storage::Db::connect(
            &test_db.url,
            std::sync::Arc::new(
                panelink::crypto::SecretBox::from_config(None, data.path()).unwrap(),
            ),
        )
        .await
        .unwrap();
        let (_, token) = db
            .create_admin(
                &panelink::storage::Actor::cli(),
                &panelink::model::Email::parse("ops@example.com").unwrap(),
                "Full Administrator",
            )
            .await
            .unwrap();
        db.close().await;
        let (bytes, signature) = signed(&key, &Specimen::default());
        let post = |signature: Option<String>| {
            let request = client
                .post(format!("{base}/api/v1/plugins"))
                .bearer_auth(token.expose())
                .header("content-type", "application/wasm")
                .body(bytes.clone());
            match signature {
                Some(s) => request.header("X-Panelink-Signature", s),
                None => request,
            }
            .send()
        };
        let unsigned = post(None).await.unwrap();
        assert_eq!(unsigned.status(), 422);
        let body: Value = unsigned.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not signed"),
            "{body}"
        );
        let staged = post(Some(signature)).await.unwrap();
        assert_eq!(staged.status(), 201);
        let body: Value = staged.json().await.unwrap();
        assert_eq!(
            (body["state"].clone(), body["signed_by"].clone()),
            (json!("staged"), json!("acme"))
        );
        let on = client
            .post(format!(
                "{base}/api/v1/plugins/specimen/versions/1.0.0/activate"
            ))
            .bearer_auth(token.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(on.status(), 200);
        let apps: Value = client
            .get(format!("{base}/api/v1/applications"))
            .bearer_auth(token.expose())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            apps["applications"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == "specimen"),
            "{apps}"
        );
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("shut down within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// Two hosts on one PostgreSQL database: a version activated through one becomes the active
/// version on the other by itself, without a restart.
#[tokio::test]
async fn an_activation_reaches_the_other_host_by_itself() {
    use std::sync::Arc;
    use std::time::Duration;

    use panelink::catalog::Catalog;
    use panelink::runtime::Plugins;
    use panelink::storage::Actor;
    use panelink_tests::Specimen;

    let Some(backend) = crate::harness::Backend::postgres() else {
        return;
    };
    let (db_a, test_db) = crate::harness::database(backend).await;
    let db_b = crate::harness::connect(&test_db).await;
    let (runtime, _) = crate::harness::shipped_plugins();
    let a = Catalog::new(runtime.clone(), Arc::new(Plugins::new()), db_a);
    let b = Arc::new(Catalog::new(
        runtime.clone(),
        Arc::new(Plugins::new()),
        db_b.clone(),
    ));
    // Host B listens before anything is activated.
    drop(db_b.peer_messages().await);
    let stop = tokio_util::sync::CancellationToken::new();
    let follower = tokio::spawn({
        let (b, stop) = (b.clone(), stop.clone());
        async move { b.follow_peers(stop).await }
    });
    let active_on_b = || b.plugins().get("specimen").map(|p| p.version().to_owned());
    let admin = Actor::cli();
    for version in ["1.0.0", "2.0.0"] {
        let bytes = Specimen::version(version).bytes();
        a.install(&admin, &bytes, None).await.expect("install");
        a.activate(&admin, "specimen", version, None)
            .await
            .expect("activate");
        assert_eq!(
            a.plugins().get("specimen").unwrap().version(),
            version,
            "host A"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while active_on_b().as_deref() != Some(version) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "host B still runs {:?}",
                active_on_b()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.cancel();
    follower.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Contract versions: a component built against contract 0.1.0 (`tests/fixtures/cpanel-contract-0.1.wasm`,
// the cPanel plugin of that time) runs beside the 0.2.0 ones.

/// The 0.1 component loads as contract 0.1.0, is granted exactly the WHM calls 0.1's operations
/// map to, provisions and deprovisions through the host's 0.1 layer (templates expanded per
/// account), and cannot list accounts.
#[tokio::test]
async fn a_0_1_component_still_provisions() {
    use panelink::adapter::{HttpMethod, Tunnel};

    // The pinned binary, exactly as `tests/fixtures/README.md` describes it.
    let fixture = std::fs::read(panelink_tests::built_plugin("cpanel-contract-0.1")).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&fixture)),
        "28d3c9019d412c8342fe4828ffdf41c6c68f935f709648566f6fa27301d6130e"
    );
    let rt = runtime();
    let old = load(&rt, "cpanel-contract-0.1").await;
    assert_eq!(old.contract(), "0.1.0");
    assert_eq!(old.description.contract_version, "0.1.0");
    assert_eq!(old.id(), "cpanel");
    assert_eq!(
        old.description.sign_in,
        panelink::adapter::SignInStyle::TokenExchange
    );
    assert!(old.description.links.iter().all(|l| l.icon.is_none()));
    assert_eq!(
        old.description.links[0].implements.as_deref(),
        Some("upgrade")
    );
    assert_eq!(old.description.links[1].implements, None);
    let granted = &old.description.allowed_requests;
    assert_eq!(granted, &panelink::runtime::contract_0_1_grants());
    assert!(granted.iter().all(|r| r.method == HttpMethod::Post));
    assert!(granted.iter().any(|r| r.path == "/json-api/batch"
        && matches!(&r.calls, Some(Tunnel::WhmBatch(f)) if f.len() == 4)));
    assert!(!granted.iter().any(|r| r.path == "/json-api/listaccts"));

    let sim = sim(Profile::Standard, 3).await;
    let t = target(&sim);
    let s = Settings::default();
    assert!(old.check_server(&t).await.expect("check").value.supported);
    let links = pushes(&old.description, &["clientarea:emails"]);
    let users: Vec<String> = sim.accounts().keys().cloned().collect();
    let batch: Vec<_> = users
        .iter()
        .map(|u| work(u, links.clone(), vec![]))
        .collect();
    let out = old
        .provision(&t, &s, links.clone(), batch)
        .await
        .expect("provision");
    assert!(out.value.iter().all(|o| o.errors().count() == 0), "{out:?}");
    for user in &users {
        let panel = sim.links(user);
        assert_eq!(panel.len(), 13);
        for push in &links {
            let link = &panel[&app_name(&push.scope)];
            assert_eq!(link.get("url"), Some(push.url_for("7", None).as_str()));
            assert_eq!(link.get("label"), Some(push.label.as_str()));
            assert_eq!(link.get("base64_png_image"), None, "0.1 has no icons");
        }
    }
    // An account naming a scope the call has no template for fails alone, before the plugin.
    let mut stray = work(&users[0], vec![], vec![]);
    stray.links = vec!["clientarea:nope".into()];
    let out = old
        .provision(
            &t,
            &s,
            links.clone(),
            [work(&users[1], links.clone(), vec![]), stray],
        )
        .await
        .expect("provision");
    assert_eq!(out.value.len(), 2);
    assert_eq!(out.value[0].errors().count(), 0);
    assert!(
        out.value[1]
            .errors()
            .next()
            .unwrap()
            .contains("clientarea:nope")
    );

    let listed = old.list_links(&t, &s, &users[0]).await.expect("list").value;
    assert_eq!(listed.iter().filter(|l| l.scope.is_some()).count(), 13);
    match old.list_accounts(&t).await {
        Err(Error::Plugin {
            error: panelink::adapter::PluginError::Unsupported(why),
            ..
        }) => assert!(why.contains("0.1.0"), "{why}"),
        other => panic!("{other:?}"),
    }
    let out = old.deprovision(&t, &s, &users).await.expect("deprovision");
    assert!(out.value.iter().all(|o| o.errors().count() == 0));
    assert!(
        users
            .iter()
            .all(|u| sim.links(u).is_empty() && sim.groups(u).is_empty())
    );
}

/// The 0.2 plugins list a server's accounts from `listaccts`: user, domain, suspended, e-mail
/// and a reseller owner.
#[tokio::test]
async fn the_0_2_plugins_list_the_servers_accounts() {
    use panel_sim::AccountDetails;

    let rt = runtime();
    let sim = PanelSim::start(
        SimConfig::new()
            .account("bob", "bob.example")
            .account("res", "res.example")
            .account_details(
                "res",
                AccountDetails {
                    suspended: true,
                    owner: "res".into(),
                    email: "res@example.com".into(),
                },
            )
            .account("cust", "cust.example")
            .account_details(
                "cust",
                AccountDetails {
                    suspended: false,
                    owner: "res".into(),
                    email: String::new(),
                },
            ),
    )
    .await
    .expect("panel-sim");
    let plugin = load(&rt, "cpanel").await;
    let accounts = plugin
        .list_accounts(&target(&sim))
        .await
        .expect("list")
        .value;
    let seen: Vec<_> = accounts
        .iter()
        .map(|a| {
            (
                a.username.as_str(),
                a.domain.as_str(),
                a.suspended,
                a.email.as_deref(),
                a.owner.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("bob", "bob.example", false, None, None),
            ("cust", "cust.example", false, None, Some("res")),
            ("res", "res.example", true, Some("res@example.com"), None),
        ]
    );
    assert_eq!(sim.calls("listaccts"), 1);
}
