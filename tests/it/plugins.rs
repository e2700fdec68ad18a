//! The real cPanel and WP Squared components, in the real runtime, against panel-sim.

use std::collections::BTreeSet;

use panel_sim::{FaultKind, PanelSim, Profile, SimConfig, SimHandle};
use panelink::adapter::{
    AccountWork, Credential, Description, LinkPush, Operation, Secret, ServerTarget, Settings,
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

fn pushes(desc: &Description, skip: &[&str]) -> Vec<LinkPush> {
    desc.links
        .iter()
        .filter(|l| !skip.contains(&l.scope.as_str()))
        .enumerate()
        .map(|(i, l)| LinkPush {
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
                l.destination.replace("{service_id}", "7")
            ),
        })
        .collect()
}

fn work(user: &str, links: Vec<LinkPush>, remove: Vec<String>) -> AccountWork {
    AccountWork {
        username: user.into(),
        domain: format!("{user}.example"),
        credential: Credential {
            subscriber_id: format!("sub-{user}"),
            secret: Secret::new(format!("secret-{user}")),
        },
        ensure_group: true,
        links,
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
        assert_eq!(d.links[0].implements, "upgrade");
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
    let settings = Settings {
        max_commands_per_request: 50,
        ..Settings::default()
    };
    let out = plugin
        .provision(&target(&sim), &settings, batch.clone())
        .await
        .expect("provision");
    assert_eq!(out.value.len(), 25);
    for (outcome, user) in out.value.iter().zip(&users) {
        assert_eq!(&outcome.username, user);
        assert_eq!(outcome.errors().count(), 0, "{outcome:?}");
        assert_eq!(outcome.results.len(), 15);
        assert_eq!(outcome.results[0].op, Operation::EnsureGroup);
    }
    // 25 accounts × (1 group + 14 links): at most 50 commands per request, and an account's 15
    // commands stay in one request, so 3 accounts a request.
    assert_eq!(sim.calls("batch"), 25_u64.div_ceil(50 / 15));
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
            let implements = if spec.implements.is_empty() {
                app_name(&push.scope)
            } else {
                spec.implements.clone()
            };
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
            assert_eq!(link.get("url"), Some(push.url.as_str()));
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
        .provision(&t, &s, batch.clone())
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
        .provision(&t, &s, batch.clone())
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
        .provision(&target(&sim), &Settings::default(), batch.clone())
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

/// Both plugins declare exactly the WHM functions they call: the four direct calls and `batch`
/// with the four integration commands, all POSTed; a full round (check, provision with removals,
/// list, deprovision) through the gate calls every one of them and nothing else.
#[tokio::test]
async fn the_plugins_declare_exactly_the_whm_functions_they_call() {
    use panelink::adapter::{HttpMethod, Tunnel};

    let direct = [
        "applist",
        "version",
        "get_current_profile",
        "list_integration_links",
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
        plugin.provision(&t, &s, batch).await.expect("provision");
        plugin.list_links(&t, &s, &users[0]).await.expect("list");
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
