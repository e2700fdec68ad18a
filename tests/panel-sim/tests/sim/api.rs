//! Single calls: envelopes, methods, auth, API version, validation texts, state semantics,
//! old-version mode, counters.

use panel_sim::whm::texts;
use panel_sim::{DEFAULT_VERSION, Profile, SimConfig};
use serde_json::{Value, json};

use super::{assert_ok, call, client, failure, link_params, post, start, start_with};

#[tokio::test]
async fn envelope_of_version_applist_and_profile() {
    let sim = start().await;
    let version = call(&sim, "version", &[]).await;
    assert_eq!(
        version,
        json!({
            "metadata": {"command": "version", "reason": "OK", "result": 1, "version": 1},
            "data": {"version": DEFAULT_VERSION},
        })
    );

    let applist = call(&sim, "applist", &[]).await;
    assert_ok(&applist);
    let apps: Vec<&str> = applist["data"]["app"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in [
        "create_integration_link",
        "create_integration_group",
        "remove_integration_link",
        "remove_integration_group",
        "list_integration_links",
        "update_integration_link_token",
        "batch",
        "get_current_profile",
    ] {
        assert!(apps.contains(&f), "applist lacks {f}: {apps:?}");
    }
    let mut sorted = apps.clone();
    sorted.sort_unstable();
    assert_eq!(apps, sorted, "applist is alphabetical");

    let profile = call(&sim, "get_current_profile", &[]).await;
    assert_ok(&profile);
    assert_eq!(profile["data"]["code"], "STANDARD");
    assert!(profile["data"]["name"].is_string());

    sim.set_profile(Profile::Wp2);
    let profile = call(&sim, "get_current_profile", &[]).await;
    assert_eq!(profile["data"]["code"], "WP2");

    let wp2 = start_with(SimConfig::new().profile(Profile::Wp2)).await;
    assert_eq!(
        call(&wp2, "get_current_profile", &[]).await["data"]["code"],
        "WP2"
    );
}

#[tokio::test]
async fn get_query_and_post_body_are_both_honoured() {
    let sim = start().await;
    let response = client()
        .get(format!(
            "{}?api.version=1&user=bob",
            sim.url("list_integration_links")
        ))
        .header("Authorization", sim.auth_header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: Value = response.json().await.unwrap();
    assert_ok(&body);
    assert_eq!(body["data"]["links"], json!([]));

    // api.version in the query string, arguments in the body.
    let response = client()
        .post(format!(
            "{}?api.version=1",
            sim.url("create_integration_group")
        ))
        .header("Authorization", sim.auth_header())
        .form(&[
            ("user", "bob"),
            ("group_id", "panelink"),
            ("label", "Billing & Support"),
            ("order", "1"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_ok(&body);
    assert_eq!(sim.groups("bob")["panelink"].label, "Billing & Support");
}

#[tokio::test]
async fn bad_credentials_get_403_and_change_nothing() {
    let sim = start().await;
    let url = sim.url("create_integration_group");
    let form = [
        ("api.version", "1"),
        ("user", "bob"),
        ("group_id", "panelink"),
        ("label", "x"),
        ("order", "1"),
    ];
    let token = sim.api_token();
    let wrong_token = format!("whm root:{token}x");
    let wrong_user = format!("whm admin:{token}");
    for header in [
        None,
        Some("whm root"),
        Some(wrong_token.as_str()),
        Some(wrong_user.as_str()),
        Some("Basic cm9vdDp4"),
    ] {
        let mut request = client().post(&url).form(&form);
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{header:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["cpanelresult"]["error"], "Access denied");
        assert_eq!(body["cpanelresult"]["data"]["result"], "0");
    }
    assert!(sim.groups("bob").is_empty());
    let counters = sim.counters();
    assert_eq!(counters.auth_failures, 5);
    assert_eq!(counters.total_calls(), 0);

    // The scheme is case-insensitive, as WHMCS sends "WHM".
    let response = client()
        .post(&url)
        .header("Authorization", format!("WHM root:{token}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn without_api_version_whm_runs_api_0() {
    let sim = start().await;
    let response = client()
        .get(sim.url("version"))
        .header("Authorization", sim.auth_header())
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "version": DEFAULT_VERSION }));

    let params = link_params("PANELINK_clientarea_invoices", "https://billing.test/x");
    let response = client()
        .post(sim.url("create_integration_link"))
        .header("Authorization", sim.auth_header())
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(failure(&body).contains("api.version=1"), "{body}");
    assert_eq!(body["metadata"]["version"], 0);
    assert!(sim.links("bob").is_empty());

    let (_, body) = post(&sim, "version", &[("api.version", "2")]).await;
    assert!(failure(&body).contains("“2”"), "{body}");
}

#[tokio::test]
async fn unknown_function_and_paths() {
    let sim = start().await;
    let body = call(&sim, "createacct", &[]).await;
    assert_eq!(
        failure(&body),
        "Unknown app (“createacct”) requested for this version (1) of the API."
    );
    assert_eq!(body["metadata"]["command"], "createacct");
    let response = client()
        .get(format!("{}/cpsess/json-api/version", sim.base_url()))
        .header("Authorization", sim.auth_header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// A function, its parameters and the reason it must fail with.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);

#[tokio::test]
async fn validation_texts() {
    let sim = start().await;
    let good = link_params("PANELINK_clientarea_invoices", "https://billing.test/x");

    let without = |key: &str| -> Vec<(&str, &str)> {
        good.iter().copied().filter(|(k, _)| *k != key).collect()
    };
    let with = |key: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut p: Vec<(&str, &str)> = good.iter().copied().filter(|(k, _)| *k != key).collect();
        p.push((key, value));
        p
    };

    let cases: Vec<Case<'_>> = vec![
        (
            "create_integration_link",
            without("user"),
            texts::missing_parameter("user", "create_integration_link"),
        ),
        (
            "create_integration_link",
            with("user", ""),
            texts::empty_value("user"),
        ),
        (
            "create_integration_link",
            with("user", "carol"),
            texts::no_such_user("carol"),
        ),
        (
            "create_integration_link",
            without("app"),
            texts::missing_parameter("app", "create_integration_link"),
        ),
        (
            "create_integration_link",
            without("implements"),
            texts::missing_parameter("implements", "create_integration_link"),
        ),
        (
            "create_integration_link",
            with("label", ""),
            texts::empty_value("label"),
        ),
        (
            "create_integration_link",
            without("subscriber_unique_id"),
            texts::missing_parameter("subscriber_unique_id", "create_integration_link"),
        ),
        (
            "create_integration_link",
            without("token"),
            texts::missing_parameter("token", "create_integration_link"),
        ),
        (
            "create_integration_link",
            with("app", "group_billing"),
            texts::group_prefix("app"),
        ),
        (
            "create_integration_link",
            without("url"),
            texts::url_required(),
        ),
        (
            "create_integration_link",
            with("label", "Bob's"),
            texts::label_quote(),
        ),
        (
            "remove_integration_link",
            vec![("user", "bob"), ("app", "group_x")],
            texts::group_prefix("app"),
        ),
        (
            "remove_integration_group",
            vec![("user", "bob"), ("group_id", "group_x")],
            texts::group_prefix("group_id"),
        ),
        (
            "create_integration_group",
            vec![("user", "bob"), ("group_id", "panelink"), ("label", "L")],
            texts::missing_parameter("order", "create_integration_group"),
        ),
        (
            "create_integration_group",
            vec![
                ("user", "bob"),
                ("group_id", "panelink"),
                ("label", "L"),
                ("order", "0"),
            ],
            texts::invalid_entry("L", "order", "0"),
        ),
        (
            "update_integration_link_token",
            vec![("user", "bob"), ("app", "a")],
            texts::missing_parameter("token", "update_integration_link_token"),
        ),
        (
            "list_integration_links",
            vec![],
            texts::missing_parameter("user", "list_integration_links"),
        ),
        (
            "list_integration_links",
            vec![("user", "")],
            texts::empty_value("user"),
        ),
        // A missing argument wins over an unknown user (cPanel checks arguments first).
        (
            "remove_integration_link",
            vec![("user", "carol")],
            texts::missing_parameter("app", "remove_integration_link"),
        ),
    ];
    for (function, params, expected) in cases {
        let body = call(&sim, function, &params).await;
        assert_eq!(failure(&body), expected, "{function} {params:?}");
        assert_eq!(body["metadata"]["command"], function);
        assert_eq!(body["data"], Value::Null);
    }
    // The literal texts, once, to pin the curly quotes.
    assert_eq!(
        texts::missing_parameter("user", "create_integration_link"),
        "Provide the \u{201c}user\u{201d} parameter for the \u{201c}create_integration_link\u{201d} function."
    );
    assert_eq!(
        texts::empty_value("user"),
        "The value of “user” may not be empty."
    );
    assert_eq!(
        texts::no_such_user("carol"),
        "You do not have a user named “carol”."
    );
    assert_eq!(
        texts::group_prefix("app"),
        "The “app” argument cannot begin with “group_”."
    );
    assert!(
        sim.integrations().is_empty(),
        "no failed call changed state"
    );
}

#[tokio::test]
async fn integration_state_semantics() {
    let sim = start().await;
    let app = "PANELINK_clientarea_invoices";
    assert_ok(
        &call(
            &sim,
            "create_integration_group",
            &[
                ("user", "bob"),
                ("group_id", "panelink"),
                ("label", "Old"),
                ("order", "3"),
            ],
        )
        .await,
    );
    assert_ok(
        &call(
            &sim,
            "create_integration_group",
            &[
                ("user", "bob"),
                ("group_id", "panelink"),
                ("label", "Billing & Support"),
                ("order", "1"),
            ],
        )
        .await,
    );
    let groups = sim.groups("bob");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups["panelink"].label, "Billing & Support");
    assert_eq!(groups["panelink"].order, 1);

    let mut params = link_params(app, "https://billing.test/clientarea.php?action=invoices");
    params.push(("hide", "1"));
    params.push(("description", "WHMCS sends this; cPanel ignores it"));
    assert_ok(&call(&sim, "create_integration_link", &params).await);
    let link = sim.link("bob", app).unwrap();
    assert_eq!(link.get("hide"), Some("1"));
    assert_eq!(link.token(), Some("s3cr3t"));
    assert_eq!(
        link.ignored()["description"],
        "WHMCS sends this; cPanel ignores it"
    );

    // Same app replaces the whole link.
    let params = link_params(app, "https://billing.test/new");
    assert_ok(&call(&sim, "create_integration_link", &params).await);
    let link = sim.link("bob", app).unwrap();
    assert_eq!(link.url(), Some("https://billing.test/new"));
    assert_eq!(link.get("hide"), None);
    assert!(link.ignored().is_empty());

    let listed = call(&sim, "list_integration_links", &[("user", "bob")]).await;
    assert_eq!(listed["data"]["links"], json!([{ "app": app }]));
    let groups = call(&sim, "list_integration_groups", &[("user", "bob")]).await;
    assert_eq!(groups["data"]["links"], json!([{ "group": "panelink" }]));

    assert_ok(
        &call(
            &sim,
            "update_integration_link_token",
            &[("user", "bob"), ("app", app), ("token", "rotated")],
        )
        .await,
    );
    assert_eq!(sim.link("bob", app).unwrap().token(), Some("rotated"));
    let config = call(
        &sim,
        "get_integration_link_user_config",
        &[("user", "bob"), ("app", app)],
    )
    .await;
    assert_eq!(
        config["data"]["userconfig"]["label"],
        "View Invoice History"
    );
    assert!(config["data"]["userconfig"].get("token").is_none());

    assert_eq!(sim.users_with_links(), vec!["bob".to_owned()]);
    assert_eq!(sim.link_count(), 1);

    // Removing is idempotent.
    for _ in 0..2 {
        assert_ok(
            &call(
                &sim,
                "remove_integration_link",
                &[("user", "bob"), ("app", app)],
            )
            .await,
        );
        assert_ok(
            &call(
                &sim,
                "remove_integration_group",
                &[("user", "bob"), ("group_id", "panelink")],
            )
            .await,
        );
    }
    assert!(sim.user_integration("bob").is_empty());
    assert!(sim.users_with_links().is_empty());

    // Accounts at runtime.
    let body = call(&sim, "list_integration_links", &[("user", "carol")]).await;
    assert_eq!(failure(&body), texts::no_such_user("carol"));
    sim.add_account("carol", "carol.example.test");
    let mut params = link_params(app, "https://billing.test/x");
    params[0] = ("user", "carol");
    assert_ok(&call(&sim, "create_integration_link", &params).await);
    assert!(sim.remove_account("carol"));
    assert!(
        sim.links("carol").is_empty(),
        "removing an account purges its links"
    );
    assert!(!sim.has_account("carol"));
}

#[tokio::test]
async fn old_version_has_no_integration_functions() {
    let sim = start_with(SimConfig::new().old_version()).await;
    let applist = call(&sim, "applist", &[]).await;
    let apps = applist["data"]["app"].as_array().unwrap();
    assert!(
        !apps.contains(&json!("create_integration_link")),
        "{apps:?}"
    );
    assert!(apps.contains(&json!("version")));

    let params = link_params("PANELINK_clientarea_invoices", "https://billing.test/x");
    let body = call(&sim, "create_integration_link", &params).await;
    assert_eq!(
        failure(&body),
        texts::unknown_function("create_integration_link")
    );
    let body = call(&sim, "get_current_profile", &[]).await;
    assert_eq!(
        failure(&body),
        texts::unknown_function("get_current_profile")
    );
    assert!(sim.links("bob").is_empty());

    // Upgrading the server at runtime brings them.
    sim.set_version(DEFAULT_VERSION);
    assert_ok(&call(&sim, "create_integration_link", &params).await);
}

#[tokio::test]
async fn counters_count_calls_requests_and_reset() {
    let sim = start().await;
    call(&sim, "version", &[]).await;
    call(&sim, "version", &[]).await;
    call(&sim, "list_integration_links", &[("user", "nobody")]).await;
    let counters = sim.counters();
    assert_eq!(counters.http_requests, 3);
    assert_eq!(counters.calls("version"), 2);
    assert_eq!(counters.calls("list_integration_links"), 1);
    assert_eq!(sim.calls("applist"), 0);
    sim.reset_counters();
    assert_eq!(sim.counters(), panel_sim::Counters::default());
}
