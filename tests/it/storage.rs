//! Storage on SQLite and PostgreSQL: migrations, secrets at rest, the queries the API and the
//! sync engine rely on.

use std::collections::BTreeSet;

use panelink::adapter::{LogLevel, Secret, Support};
use panelink::crypto;
use panelink::model::{
    ApplicationId, ClientPermission, ClientStatus, DisplayName, Email, Hostname, LinkSetting, Name,
    Permission, Port, Scope, ServiceStatus, Username,
};
use panelink::storage::{
    ActivityOutcome, Actor, Error, NewActivity, NewClient, NewLogEntry, NewPluginVersion,
    NewServer, NewService, NewSsoToken, PluginSource, PluginState, RedeemWrites, ServerPatch,
    ServiceFilter, ServicePatch, TokenLookup,
};

use panelink::sync_port::{Change, RecordChange, RecordedGroup, RecordedLink};

use crate::harness::{Backend, TEST_SECRET_KEY, TestDb, database, on_both};

on_both!(
    migrations_are_idempotent_and_seed_full_administrator,
    admin_tokens_are_stored_hashed,
    server_tokens_are_sealed_and_patchable,
    servers_in_use_cannot_be_deleted,
    clients_get_an_owner_with_every_permission,
    services_filter_and_linked_services,
    link_settings_replace_atomically,
    application_log_holds_the_last_operation,
    plugin_versions_record_activate_and_roll_back,
    changes_are_audited_without_secrets,
    sso_writes_commit_together_and_fail_alone,
    account_record_survives_the_upgrade_and_applies_changes,
);

fn server(name: &str, module: &str, token: &str) -> NewServer {
    NewServer {
        name: Name::parse(name).unwrap(),
        module: ApplicationId::parse(module).unwrap(),
        hostname: Hostname::parse("panel.example.com").unwrap(),
        port: Port::default_for(true),
        secure: true,
        username: Username::parse("root").unwrap(),
        api_token: Secret::new(token),
        enabled: true,
    }
}

fn client(name: &str) -> NewClient {
    NewClient {
        name: Name::parse(name).unwrap(),
        email: Email::parse(&format!("{}@example.com", name.to_lowercase())).unwrap(),
        status: ClientStatus::Active,
        allow_sso: true,
    }
}

async fn migrations_are_idempotent_and_seed_full_administrator(backend: Backend) {
    let (db, _guard) = database(backend).await;
    db.migrate().await.expect("second migrate is a no-op");
    assert!(db.is_migrated().await.unwrap());
    let roles = db.roles().await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].name, "Full Administrator");
    assert!(roles[0].builtin);
    assert_eq!(
        roles[0].permissions,
        Permission::ALL.iter().copied().collect::<BTreeSet<_>>()
    );
    assert!(
        db.admins().await.unwrap().is_empty(),
        "no admin until one is created"
    );
}

async fn admin_tokens_are_stored_hashed(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let email = Email::parse("Ops@Example.com").unwrap();
    let (admin, token) = db
        .create_admin(&Actor::cli(), &email, "Full Administrator")
        .await
        .unwrap();
    assert_eq!(admin.email, "ops@example.com");
    let snapshot = db.snapshot().await.unwrap().join("\n");
    assert!(!snapshot.contains(token.expose()), "plaintext token stored");
    assert!(snapshot.contains(&crypto::hash_token(token.expose())));
    let principal = db.authenticate(token.expose()).await.unwrap().unwrap();
    assert_eq!(principal.admin_id, admin.id);
    assert!(principal.may(Permission::ConfigureApplicationLinks));
    assert!(db.authenticate("plk_nope").await.unwrap().is_none());
    assert!(matches!(
        db.create_admin(&Actor::cli(), &email, "Full Administrator")
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        db.create_admin(
            &Actor::cli(),
            &Email::parse("x@example.com").unwrap(),
            "Nope"
        )
        .await,
        Err(Error::NotFound("role"))
    ));

    let viewer = db
        .create_role(
            &Actor::cli(),
            &Name::parse("Viewer").unwrap(),
            &BTreeSet::from([Permission::ManageClients]),
        )
        .await
        .unwrap();
    let (_, token) = db
        .create_admin(
            &Actor::cli(),
            &Email::parse("v@example.com").unwrap(),
            &viewer.name,
        )
        .await
        .unwrap();
    let principal = db.authenticate(token.expose()).await.unwrap().unwrap();
    assert_eq!(
        principal.permissions,
        BTreeSet::from([Permission::ManageClients])
    );
    assert!(matches!(
        db.create_role(
            &Actor::cli(),
            &Name::parse("Viewer").unwrap(),
            &BTreeSet::new()
        )
        .await,
        Err(Error::Conflict(_))
    ));
}

async fn server_tokens_are_sealed_and_patchable(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let created = db
        .create_server(
            &Actor::cli(),
            &server("cp1", "cpanel", "SEALEDTOKEN123"),
            |_| None,
        )
        .await
        .unwrap()
        .0;
    assert_eq!((created.port, created.secure), (2087, true));
    assert_eq!(created.supported, None);
    let snapshot = db.snapshot().await.unwrap().join("\n");
    assert!(!snapshot.contains("SEALEDTOKEN123"), "{snapshot}");
    let target = db.server_target(created.id).await.unwrap();
    assert_eq!(target.api_token.expose(), "SEALEDTOKEN123");
    assert_eq!(
        (target.hostname.as_str(), target.port),
        ("panel.example.com", 2087)
    );

    // Turning TLS off moves the default port along; a new token replaces the old one.
    let patched = db
        .update_server(
            &Actor::cli(),
            created.id,
            &ServerPatch {
                secure: Some(false),
                api_token: Some(Secret::new("NEWTOKEN456")),
                ..ServerPatch::default()
            },
            |_, _, _| None,
        )
        .await
        .unwrap()
        .0;
    assert_eq!((patched.port, patched.secure), (2086, false));
    assert_eq!(
        db.server_target(created.id)
            .await
            .unwrap()
            .api_token
            .expose(),
        "NEWTOKEN456"
    );
    // An explicit port stays.
    let patched = db
        .update_server(
            &Actor::cli(),
            created.id,
            &ServerPatch {
                port: Some(Port::new(8443).unwrap()),
                secure: Some(true),
                // Moving a server needs its token again.
                api_token: Some(Secret::new("NEWTOKEN789")),
                ..ServerPatch::default()
            },
            |_, _, _| None,
        )
        .await
        .unwrap()
        .0;
    assert_eq!(patched.port, 8443);

    let checked = db
        .record_support(
            created.id,
            &Support {
                supported: true,
                detail: "ok".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(checked.supported, Some(true));
    db.set_server_sync_state(created.id, true).await.unwrap();
    let counts = db.server_counts("cpanel").await.unwrap();
    assert_eq!(
        (counts.total, counts.supported, counts.synced, counts.failed),
        (1, 1, 0, 1)
    );
    assert_eq!(db.server_counts("wpsquared").await.unwrap().total, 0);
    assert!(matches!(
        db.server_target(999).await,
        Err(Error::NotFound("server"))
    ));
}

async fn servers_in_use_cannot_be_deleted(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let actor = Actor::cli();
    let s = db
        .create_server(&actor, &server("cp1", "cpanel", "t"), |_| None)
        .await
        .unwrap()
        .0;
    let c = db.create_client(&actor, &client("Acme")).await.unwrap();
    let svc = db
        .create_service(
            &actor,
            &NewService {
                client_id: c.id,
                server_id: s.id,
                username: Username::parse("acme").unwrap(),
                domain: Hostname::parse("acme.example").unwrap(),
                status: ServiceStatus::Active,
            },
            |_| None,
        )
        .await
        .unwrap()
        .0;
    assert!(matches!(
        db.delete_server(&actor, s.id).await,
        Err(Error::Conflict(_))
    ));
    let other = db
        .create_server(&actor, &server("cp2", "cpanel", "t"), |_| None)
        .await
        .unwrap()
        .0;
    db.update_service(
        &actor,
        svc.id,
        &ServicePatch {
            server_id: Some(other.id),
            ..ServicePatch::default()
        },
        |_, _| None,
    )
    .await
    .unwrap();
    db.delete_server(&actor, s.id).await.unwrap();
    assert!(matches!(
        db.server(s.id).await,
        Err(Error::NotFound("server"))
    ));
    assert!(matches!(
        db.delete_server(&actor, s.id).await,
        Err(Error::NotFound("server"))
    ));
}

async fn clients_get_an_owner_with_every_permission(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let actor = Actor::cli();
    let c = db.create_client(&actor, &client("Acme")).await.unwrap();
    let users = db.client_users(c.id).await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].owner);
    assert_eq!(users[0].id, c.owner_user_id);
    assert_eq!(users[0].email, c.email);
    assert!(users[0].permissions.contains(&ClientPermission::Sso));
    assert_eq!(users[0].permissions.len(), ClientPermission::ALL.len());

    let dev = db
        .create_client_user(
            &actor,
            c.id,
            &Email::parse("dev@acme.example").unwrap(),
            &BTreeSet::from([ClientPermission::Sso, ClientPermission::Tickets]),
        )
        .await
        .unwrap();
    assert!(!dev.owner);
    assert!(matches!(
        db.create_client_user(
            &actor,
            c.id,
            &Email::parse("dev@acme.example").unwrap(),
            &BTreeSet::new()
        )
        .await,
        Err(Error::Conflict(_))
    ));
    let revoked = db
        .set_client_user_permissions(
            &actor,
            c.id,
            dev.id,
            &BTreeSet::from([ClientPermission::Tickets]),
        )
        .await
        .unwrap();
    assert_eq!(
        revoked.permissions,
        BTreeSet::from([ClientPermission::Tickets])
    );
    // A user of another client is not found through this one.
    let other = db.create_client(&actor, &client("Other")).await.unwrap();
    assert!(matches!(
        db.set_client_user_permissions(&actor, other.id, dev.id, &BTreeSet::new())
            .await,
        Err(Error::NotFound("user"))
    ));

    let closed = db
        .update_client(
            &actor,
            c.id,
            &panelink::storage::ClientPatch {
                status: Some(ClientStatus::Closed),
                allow_sso: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (closed.status, closed.allow_sso),
        (ClientStatus::Closed, false)
    );
    assert_eq!(closed.name, "Acme");
    assert_eq!(db.clients().await.unwrap().len(), 2);
}

async fn services_filter_and_linked_services(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let actor = Actor::cli();
    let cp = db
        .create_server(&actor, &server("cp", "cpanel", "t"), |_| None)
        .await
        .unwrap()
        .0;
    let mut off = server("off", "cpanel", "t");
    off.enabled = false;
    let off = db.create_server(&actor, &off, |_| None).await.unwrap().0;
    let wp = db
        .create_server(&actor, &server("wp", "wpsquared", "t"), |_| None)
        .await
        .unwrap()
        .0;
    let a = db.create_client(&actor, &client("A")).await.unwrap();
    let b = db.create_client(&actor, &client("B")).await.unwrap();
    let mut ids = Vec::new();
    for (client, server, user, status) in [
        (a.id, cp.id, "a1", ServiceStatus::Active),
        (a.id, cp.id, "a2", ServiceStatus::Suspended),
        (a.id, cp.id, "a3", ServiceStatus::Terminated),
        (b.id, cp.id, "", ServiceStatus::Active),
        (b.id, off.id, "b2", ServiceStatus::Active),
        (b.id, wp.id, "b3", ServiceStatus::Active),
    ] {
        let svc = db
            .create_service(
                &actor,
                &NewService {
                    client_id: client,
                    server_id: server,
                    username: Username::parse_optional(user).unwrap(),
                    domain: Hostname::parse(&format!("{client}-{server}.example")).unwrap(),
                    status,
                },
                |_| None,
            )
            .await
            .unwrap()
            .0;
        ids.push(svc.id);
    }
    let linked: Vec<i64> = db
        .linked_services("cpanel")
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(linked, vec![ids[0], ids[1], ids[3]]);
    assert_eq!(db.linked_services("wpsquared").await.unwrap().len(), 1);
    let of = |server_id, client_id| ServiceFilter {
        server_id,
        client_id,
    };
    assert_eq!(db.services(of(None, None)).await.unwrap().len(), 6);
    assert_eq!(db.services(of(Some(cp.id), None)).await.unwrap().len(), 4);
    assert_eq!(db.services(of(None, Some(b.id))).await.unwrap().len(), 3);
    assert_eq!(
        db.services(of(Some(cp.id), Some(b.id)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        db.create_service(
            &actor,
            &NewService {
                client_id: 9999,
                server_id: cp.id,
                username: Username::parse("x").unwrap(),
                domain: Hostname::parse("x.example").unwrap(),
                status: ServiceStatus::Active,
            },
            |_| None
        )
        .await,
        Err(Error::NotFound("client"))
    ));
}

fn setting(scope: &str, name: &str, enabled: bool) -> LinkSetting {
    LinkSetting {
        scope: Scope::parse(scope).unwrap(),
        display_name: DisplayName::parse(name).unwrap(),
        enabled,
    }
}

async fn link_settings_replace_atomically(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let actor = Actor::cli();
    assert!(matches!(
        db.save_link_settings(&actor, "cpanel", &[]).await,
        Err(Error::NotFound("application"))
    ));
    let app = db.ensure_application("cpanel").await.unwrap();
    assert!(!app.enabled);
    assert!(db.link_settings("cpanel").await.unwrap().is_empty());
    let first = vec![
        setting("clientarea:invoices", "Bills", true),
        setting("clientarea:tickets", "Help", false),
    ];
    db.save_link_settings(&actor, "cpanel", &first)
        .await
        .unwrap();
    assert_eq!(db.link_settings("cpanel").await.unwrap(), first);
    let second = vec![
        setting("clientarea:tickets", "Support", true),
        setting("clientarea:profile", "Me", true),
    ];
    db.save_link_settings(&actor, "cpanel", &second)
        .await
        .unwrap();
    assert_eq!(db.link_settings("cpanel").await.unwrap(), second);
    // A failing save (a duplicate scope breaks the primary key) leaves the old settings.
    let broken = vec![
        setting("clientarea:emails", "A", true),
        setting("clientarea:emails", "B", true),
    ];
    assert!(
        db.save_link_settings(&actor, "cpanel", &broken)
            .await
            .is_err()
    );
    assert_eq!(db.link_settings("cpanel").await.unwrap(), second);

    let enabled = db
        .set_application_enabled(&actor, "cpanel", true)
        .await
        .unwrap()
        .0;
    assert!(enabled.enabled);
    assert!(
        db.ensure_application("cpanel").await.unwrap().enabled,
        "ensure keeps state"
    );
}

async fn application_log_holds_the_last_operation(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let entry = |sync_id, level, message: &str| NewLogEntry {
        sync_id,
        level,
        message: message.into(),
        server_id: Some(1),
        service_id: None,
    };
    db.start_log("cpanel").await.unwrap();
    db.append_log(
        "cpanel",
        &[
            entry(Some(1), LogLevel::Debug, "start"),
            entry(
                Some(1),
                LogLevel::Warning,
                "You do not have a user named “bob”.",
            ),
        ],
    )
    .await
    .unwrap();
    db.append_log("wpsquared", &[entry(None, LogLevel::Notice, "none")])
        .await
        .unwrap();
    assert_eq!(db.warning_count("cpanel").await.unwrap(), 1);
    let log = db.log("cpanel").await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].message, "start");
    assert_eq!(log[1].level, LogLevel::Warning);
    assert_eq!((log[1].server_id, log[1].service_id), (Some(1), None));
    db.start_log("cpanel").await.unwrap();
    db.append_log("cpanel", &[entry(Some(2), LogLevel::Debug, "again")])
        .await
        .unwrap();
    let log = db.log("cpanel").await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["again"]
    );
    assert_eq!(db.warning_count("cpanel").await.unwrap(), 0);
    assert_eq!(db.log("wpsquared").await.unwrap().len(), 1);
}

fn version(name: &str, version: &str, digest: &str, source: PluginSource) -> NewPluginVersion {
    NewPluginVersion {
        name: name.into(),
        application: name.into(),
        version: version.into(),
        digest: digest.into(),
        world: "panelink:adapter/adapter@0.1.0".into(),
        size: 3,
        source,
        component: (source == PluginSource::Upload).then(|| vec![1, 2, 3]),
        signature: None,
        signed_by: None,
    }
}

async fn plugin_versions_record_activate_and_roll_back(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let actor = Actor::cli();
    let (v1, new) = db
        .record_plugin_version(
            &actor,
            &version("cpanel", "1.0.0", "sha256:a", PluginSource::Directory),
        )
        .await
        .unwrap();
    assert!(new);
    let (again, new) = db
        .record_plugin_version(
            &actor,
            &version("cpanel", "1.0.0", "sha256:a", PluginSource::Directory),
        )
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(again.id, v1.id);
    // A directory build replaced in place keeps its record.
    let (rebuilt, _) = db
        .record_plugin_version(
            &actor,
            &version("cpanel", "1.0.0", "sha256:b", PluginSource::Directory),
        )
        .await
        .unwrap();
    assert_eq!((rebuilt.id, rebuilt.digest.as_str()), (v1.id, "sha256:b"));
    // An upload may not reuse a version number with other content.
    assert!(matches!(
        db.record_plugin_version(
            &actor,
            &version("cpanel", "1.0.0", "sha256:c", PluginSource::Upload)
        )
        .await,
        Err(Error::Conflict(_))
    ));
    let (v2, _) = db
        .record_plugin_version(
            &actor,
            &version("cpanel", "2.0.0", "sha256:d", PluginSource::Upload),
        )
        .await
        .unwrap();
    assert_eq!(
        db.plugin_component(v2.id).await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(db.plugin_component(v1.id).await.unwrap(), None);

    assert!(
        db.previous_plugin_version("cpanel")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(v2.state(), PluginState::Staged);
    db.activate_plugin_version(&actor, v1.id, "plugin.activate", "")
        .await
        .unwrap();
    let active = db
        .activate_plugin_version(&actor, v2.id, "plugin.activate", "canary=none")
        .await
        .unwrap();
    assert!(active.active);
    assert_eq!(active.state(), PluginState::Active);
    let versions = db.plugin_versions().await.unwrap();
    assert_eq!(versions.iter().filter(|v| v.active).count(), 1);
    let previous = db.previous_plugin_version("cpanel").await.unwrap().unwrap();
    assert_eq!(previous.id, v1.id);
    assert_eq!(previous.state(), PluginState::Previous);

    // A signature arriving for a recorded, unsigned upload is recorded once.
    let mut signed = version("cpanel", "2.0.0", "sha256:d", PluginSource::Upload);
    signed.signature = Some("ed25519=AAAA".into());
    signed.signed_by = Some("acme".into());
    let (v2_signed, new) = db.record_plugin_version(&actor, &signed).await.unwrap();
    assert!(!new);
    assert_eq!(v2_signed.signed_by.as_deref(), Some("acme"));
    signed.signed_by = Some("other".into());
    let (same, _) = db.record_plugin_version(&actor, &signed).await.unwrap();
    assert_eq!(same.signed_by.as_deref(), Some("acme"));

    // Flagging: once, with the error; a flagged version is no rollback target; activating
    // it again clears the flag.
    let flagged = db
        .flag_plugin_version("sha256:b", "trapped")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flagged.state(), PluginState::Failed);
    assert_eq!(flagged.last_error.as_deref(), Some("trapped"));
    assert!(
        db.flag_plugin_version("sha256:b", "again")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.previous_plugin_version("cpanel")
            .await
            .unwrap()
            .is_none()
    );
    let back = db
        .activate_plugin_version(&actor, v1.id, "plugin.rollback", "")
        .await
        .unwrap();
    assert_eq!((back.state(), back.last_error), (PluginState::Active, None));
    let actions: Vec<String> = db
        .audit_log(20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in [
        "plugin.install",
        "plugin.sign",
        "plugin.activate",
        "plugin.flag",
        "plugin.rollback",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    assert_eq!(
        db.plugin_version("cpanel", "2.0.0").await.unwrap().id,
        v2.id
    );
    assert!(matches!(
        db.plugin_version("cpanel", "9").await,
        Err(Error::NotFound(_))
    ));
}

async fn changes_are_audited_without_secrets(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let admin = Actor::admin(7, "ops@example.com");
    let s = db
        .create_server(&admin, &server("cp1", "cpanel", "AUDITSECRET"), |_| None)
        .await
        .unwrap()
        .0;
    db.update_server(
        &admin,
        s.id,
        &ServerPatch {
            api_token: Some(Secret::new("AUDITSECRET2")),
            enabled: Some(false),
            ..ServerPatch::default()
        },
        |_, _, _| None,
    )
    .await
    .unwrap();
    let entries = db.audit_log(10).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].action, "server.update");
    assert_eq!(entries[0].admin_id, Some(7));
    assert!(
        entries[0].detail.contains("enabled=false"),
        "{:?}",
        entries[0]
    );
    assert!(entries[0].detail.contains("api_token=(replaced)"));
    assert_eq!(entries[1].action, "server.create");
    assert_eq!(entries[1].target, format!("server:{}", s.id));
    for e in &entries {
        assert!(!e.detail.contains("AUDITSECRET"), "{e:?}");
    }
}

/// Single sign-on's writes go through the group-commit writer (on SQLite many share one
/// transaction and one statement): a bad one among many concurrent ones fails alone, each
/// token is consumed once even when redeemed twice at the same time, and every redemption's
/// writes are there.
async fn sso_writes_commit_together_and_fail_alone(backend: Backend) {
    let (db, _guard) = database(backend).await;
    let actor = Actor::cli();
    let c = db.create_client(&actor, &client("Acme")).await.unwrap();
    let srv = db
        .create_server(&actor, &server("one", "cpanel", "t0k3n"), |_| None)
        .await
        .unwrap()
        .0;
    let service = db
        .create_service(
            &actor,
            &NewService {
                client_id: c.id,
                server_id: srv.id,
                username: Username::parse("acme").unwrap(),
                domain: Hostname::parse("acme.example").unwrap(),
                status: ServiceStatus::Active,
            },
            |_| None,
        )
        .await
        .unwrap()
        .0;
    let issue = |hash: String, service_id: i64| {
        let db = db.clone();
        tokio::spawn(async move {
            db.create_sso_token(NewSsoToken {
                token_hash: hash,
                service_id,
                application: "cpanel".into(),
                scope: "clientarea:invoices".into(),
                destination: "/invoices".into(),
                source: None,
                expires_at: panelink::storage::now_ms() + 60_000,
            })
            .await
        })
    };
    let mut issued = Vec::new();
    for i in 0..30 {
        // The 13th names a service that does not exist.
        let service_id = if i == 13 {
            service.id + 1000
        } else {
            service.id
        };
        issued.push((i, issue(format!("{i:064x}"), service_id)));
    }
    for (i, task) in issued {
        let outcome = task.await.unwrap();
        if i == 13 {
            assert!(
                matches!(outcome, Err(Error::NotFound("service"))),
                "{outcome:?}"
            );
        } else {
            outcome.unwrap();
        }
    }

    let redeem = |hash: String| {
        let db = db.clone();
        let client_id = c.id;
        tokio::spawn(async move {
            db.redeem_sso_token(&hash, move |lookup| RedeemWrites {
                session: None,
                activity: lookup.info().map(|_| NewActivity {
                    client_id,
                    event: "sso_login",
                    outcome: ActivityOutcome::Success,
                    user_id: None,
                    service_id: None,
                    actor: "sso".into(),
                    source: None,
                    detail: "test".into(),
                }),
            })
            .await
            .unwrap()
        })
    };
    // Every good token twice at once, the failed one and an unknown one once.
    let mut waves = Vec::new();
    for i in 0..30 {
        waves.push((i, redeem(format!("{i:064x}")), redeem(format!("{i:064x}"))));
    }
    let unknown = redeem(format!("{:064x}", 999));
    for (i, a, b) in waves {
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        if i == 13 {
            assert_eq!((a, b), (TokenLookup::Unknown, TokenLookup::Unknown));
            continue;
        }
        let outcomes = [&a, &b];
        let redeemed = outcomes
            .iter()
            .filter(|l| matches!(l, TokenLookup::Redeemed(_)))
            .count();
        let used = outcomes
            .iter()
            .filter(|l| matches!(l, TokenLookup::Used(_)))
            .count();
        assert_eq!((redeemed, used), (1, 1), "token {i}: {a:?} / {b:?}");
        assert_eq!(a.info().unwrap().destination, "/invoices");
        assert_eq!(a.info().unwrap().account.as_ref().unwrap().client_id, c.id);
    }
    assert_eq!(unknown.await.unwrap(), TokenLookup::Unknown);
    // One activity entry per redemption of an existing token: 29 tokens x 2.
    assert_eq!(db.client_activity(c.id, 1000).await.unwrap().len(), 58);
}

fn link(
    service_id: i64,
    user: &str,
    scope: &str,
    label: &str,
    position: i64,
    version: i64,
) -> RecordedLink {
    RecordedLink {
        service_id,
        username: user.into(),
        scope: scope.into(),
        label: label.into(),
        position,
        credential_version: version,
    }
}

/// The record as sorted vectors, for comparison.
async fn record_of(
    db: &panelink::storage::Db,
    server_id: i64,
) -> (Vec<(i64, String)>, Vec<RecordedLink>) {
    let (groups, mut links) = db.recorded_state(server_id, "cpanel").await.unwrap();
    let mut groups: Vec<(i64, String)> = groups
        .into_iter()
        .map(
            |RecordedGroup {
                 service_id,
                 username,
             }| (service_id, username),
        )
        .collect();
    groups.sort();
    links.sort_by(|a, b| (a.service_id, &a.scope).cmp(&(b.service_id, &b.scope)));
    (groups, links)
}

/// A database written by the per-link record (migrations 1–3) is upgraded to the one-row-per-
/// account record without losing what any account was given; then changes apply to it as
/// deltas (a removed group and last link delete the row; other servers' rows are untouched).
async fn account_record_survives_the_upgrade_and_applies_changes(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let dialect = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let old = tempfile::tempdir().unwrap();
    let source = panelink_tests::repo_root()
        .join("host/migrations")
        .join(dialect);
    for name in ["0001_core.sql", "0002_sync.sql", "0003_sso.sql"] {
        std::fs::copy(source.join(name), old.path().join(name)).unwrap();
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO account_groups VALUES (1, 'cpanel', 7, 'alice'), (3, 'cpanel', 7, 'carol'), \
         (1, 'wpsquared', 7, 'alice')",
        "INSERT INTO account_links VALUES \
         (1, 'cpanel', 'clientarea:open_ticket', 7, 'alice', 'Open Ticket', 1, 2), \
         (1, 'cpanel', 'clientarea:invoices', 7, 'alice', 'Invoices & \"Bills\"', 2, 2), \
         (2, 'cpanel', 'clientarea:open_ticket', 7, 'bob', 'Tickets', 1, 1), \
         (4, 'cpanel', 'clientarea:open_ticket', 8, 'dave', 'Open Ticket', 1, 1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let secrets = panelink::crypto::SecretBox::from_material(TEST_SECRET_KEY).unwrap();
    let db = panelink::storage::Db::connect(&test_db.url, std::sync::Arc::new(secrets))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    assert!(db.is_migrated().await.unwrap());
    let (groups, links) = record_of(&db, 7).await;
    assert_eq!(groups, [(1, "alice".to_owned()), (3, "carol".to_owned())]);
    assert_eq!(
        links,
        [
            link(
                1,
                "alice",
                "clientarea:invoices",
                "Invoices & \"Bills\"",
                2,
                2
            ),
            link(1, "alice", "clientarea:open_ticket", "Open Ticket", 1, 2),
            link(2, "bob", "clientarea:open_ticket", "Tickets", 1, 1),
        ]
    );
    let (groups, links) = record_of(&db, 8).await;
    assert!(groups.is_empty());
    assert_eq!(
        links,
        [link(
            4,
            "dave",
            "clientarea:open_ticket",
            "Open Ticket",
            1,
            1
        )]
    );
    let (wp_groups, wp_links) = db.recorded_state(7, "wpsquared").await.unwrap();
    assert_eq!((wp_groups.len(), wp_links.len()), (1, 0));
    let mut servers = db.servers_with_records("cpanel").await.unwrap();
    servers.sort_unstable();
    assert_eq!(servers, [7, 8]);

    // Changes on server 7: alice loses a link and gets another, bob loses his only link, carol
    // loses her group, erin is new. Server 8 and the other application are not touched.
    let changes = [
        RecordChange::LinkRemoved {
            service_id: 1,
            scope: "clientarea:invoices".into(),
        },
        RecordChange::Link(link(1, "alice", "clientarea:upgrade", "Upgrade", 3, 2)),
        RecordChange::LinkRemoved {
            service_id: 2,
            scope: "clientarea:open_ticket".into(),
        },
        RecordChange::GroupRemoved { service_id: 3 },
        RecordChange::Group {
            service_id: 5,
            username: "erin".into(),
        },
        RecordChange::Link(link(
            5,
            "erin",
            "clientarea:open_ticket",
            "Open Ticket",
            1,
            1,
        )),
        // A removal for an account this server has no record of changes nothing.
        RecordChange::LinkRemoved {
            service_id: 4,
            scope: "clientarea:open_ticket".into(),
        },
    ];
    assert!(
        db.record_changes("cpanel", 7, &changes, None, None, &[])
            .await
            .unwrap()
    );
    let (groups, links) = record_of(&db, 7).await;
    assert_eq!(groups, [(1, "alice".to_owned()), (5, "erin".to_owned())]);
    assert_eq!(
        links,
        [
            link(1, "alice", "clientarea:open_ticket", "Open Ticket", 1, 2),
            link(1, "alice", "clientarea:upgrade", "Upgrade", 3, 2),
            link(5, "erin", "clientarea:open_ticket", "Open Ticket", 1, 1),
        ]
    );
    assert_eq!(record_of(&db, 8).await.1.len(), 1);
    assert_eq!(db.recorded_state(7, "wpsquared").await.unwrap().0.len(), 1);
    // Bob's and carol's rows are gone, not left empty.
    assert_eq!(
        db.servers_with_records_of_service(2).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(
        db.servers_with_records_of_service(3).await.unwrap(),
        Vec::<i64>::new()
    );
    let change = db.forget_drifted("cpanel", 7, &[1]).await.unwrap();
    assert_eq!(
        db.pending_change(change).await.unwrap().unwrap().change,
        Change::DriftFound {
            application: "cpanel".into(),
            server_id: 7
        },
        "forgetting queues the repair in the same transaction"
    );
    assert_eq!(record_of(&db, 7).await.0, [(5, "erin".to_owned())]);
    db.close().await;
}
