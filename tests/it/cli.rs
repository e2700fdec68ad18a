//! The `panelink` command line in-process: configuration precedence (file < environment <
//! flags), `migrate`, and `admin create` bootstrapping an empty database.

use clap::Parser;
use panelink::cli::{Cli, run};
use panelink::config::LogFormat;

use crate::harness::{Backend, TestDb, on_both};

on_both!(
    configuration_migrate_and_admin_create,
    server_import_from_the_command_line
);

async fn configuration_migrate_and_admin_create(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("panelink.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\ndatabase_url = \"sqlite://from-file.db\"\nlog_format = \"json\"\n\
         public_url = \"https://billing.example\"\n",
    )
    .unwrap();
    let args = |extra: &[&str]| {
        let mut args = vec![
            "panelink".to_owned(),
            "--config".to_owned(),
            file.display().to_string(),
            "--data-dir".to_owned(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Cli::try_parse_from(args).unwrap()
    };
    let env = || {
        [
            ("PANELINK_LISTEN".to_owned(), "127.0.0.1:2".to_owned()),
            ("PANELINK_DATABASE_URL".to_owned(), test_db.url.clone()),
        ]
    };

    let cli = args(&["--listen", "127.0.0.1:3", "migrate"]);
    let config = cli.configuration(env()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:3", "flags win");
    assert_eq!(
        config.database_url, test_db.url,
        "the environment beats the file"
    );
    assert_eq!(
        config.log_format,
        LogFormat::Json,
        "the file beats the defaults"
    );
    assert_eq!(config.client_area_url, "https://billing.example/portal");
    run(cli.command, config.clone()).await.unwrap();

    // An empty database has no admin; `admin create` makes one with Full Administrator.
    let db = panelink::boot::open_database(&config).await.unwrap();
    assert!(db.admins().await.unwrap().is_empty());
    let cli = args(&["admin", "create", "--email", "Boot@Example.com"]);
    run(cli.command, config.clone()).await.unwrap();
    let admins = db.admins().await.unwrap();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].email, "boot@example.com");
    assert_eq!(admins[0].role, "Full Administrator");
    assert!(dir.path().join("secret.key").exists());

    let cli = args(&[
        "admin",
        "create",
        "--email",
        "x@example.com",
        "--role",
        "Nope",
    ]);
    let err = run(cli.command, config.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("no role is named \"Nope\""),
        "{err}"
    );
    let cli = args(&["admin", "create", "--email", "not-an-email"]);
    assert!(run(cli.command, config).await.is_err());
    assert!(
        Cli::try_parse_from(["panelink", "admin", "create"]).is_err(),
        "--email is required"
    );
    db.close().await;
}

on_both!(plugin_commands_round_trip_in_the_real_binary);

/// Run the real `panelink` binary with a clean environment; returns (success, stdout, stderr).
fn panelink(bin: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run panelink");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A vendor makes a key, signs and verifies a component; an operator who trusts the key
/// installs it (unsigned and badly signed ones are refused), lists, activates; all of it
/// audited as `cli` in the configured database.
async fn plugin_commands_round_trip_in_the_real_binary(backend: Backend) {
    let bin = panelink_tests::panelink_binary();
    let test_db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let run = |args: &[&str]| panelink(&bin, args);

    // Vendor: a key.
    let (ok, out, err) = run(&[
        "plugin",
        "keygen",
        "--key",
        &path("vendor.key"),
        "--name",
        "acme",
    ]);
    assert!(ok, "{err}");
    let public = out.lines().last().unwrap().to_owned();
    assert!(public.starts_with("ed25519:"), "{out}");
    assert!(
        out.contains(&format!("name = \"acme\", public_key = \"{public}\"")),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path("vendor.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, _, err) = run(&["plugin", "keygen", "--key", &path("vendor.key")]);
    assert!(
        !ok && err.contains("vendor.key"),
        "a key file is never overwritten: {err}"
    );

    // Vendor: sign (to a file, and printed: the same signature), verify.
    std::fs::write(
        path("specimen.wasm"),
        panelink_tests::Specimen::default().bytes(),
    )
    .unwrap();
    let (ok, out, err) = run(&[
        "plugin",
        "sign",
        "--key",
        &path("vendor.key"),
        &path("specimen.wasm"),
        "--out",
        &path("specimen.wasm.sig"),
    ]);
    assert!(
        ok && out.contains("Signed specimen 1.0.0 (sha256:"),
        "{out}{err}"
    );
    let signature = std::fs::read_to_string(path("specimen.wasm.sig")).unwrap();
    assert!(signature.starts_with("ed25519="), "{signature}");
    let (ok, out, err) = run(&[
        "plugin",
        "sign",
        "--key",
        &path("vendor.key"),
        &path("specimen.wasm"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().last().unwrap(), signature.trim());
    let (ok, out, err) = run(&[
        "plugin",
        "verify",
        &path("specimen.wasm"),
        "--public-key",
        &public,
    ]);
    assert!(
        ok && out.contains("Good signature: specimen 1.0.0"),
        "{out}{err}"
    );
    // The signature of other bytes does not verify.
    std::fs::write(
        path("other.wasm"),
        panelink_tests::Specimen::version("2.0.0").bytes(),
    )
    .unwrap();
    std::fs::copy(path("specimen.wasm.sig"), path("other.wasm.sig")).unwrap();
    let (ok, _, err) = run(&[
        "plugin",
        "verify",
        &path("other.wasm"),
        "--public-key",
        &public,
    ]);
    assert!(!ok && err.contains("BAD signature"), "{err}");

    // Operator: the configuration trusts the vendor's key.
    let config = path("panelink.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{}\"\ndata_dir = \"{}\"\nplugin_dir = \"{}\"\nlog_level = \"warn\"\n\
             trusted_keys = [{{ name = \"acme\", public_key = \"{public}\" }}]\n",
            test_db.url,
            dir.path().display(),
            empty.path().display()
        ),
    )
    .unwrap();
    let op = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run(&all)
    };
    let (ok, out, err) = op(&["plugin", "verify", &path("specimen.wasm")]);
    assert!(ok && out.contains("signed by acme"), "{out}{err}");
    let (ok, _, err) = op(&["plugin", "install", &path("other.wasm")]);
    assert!(
        !ok && err.contains("does not verify with any trusted key"),
        "{err}"
    );
    std::fs::copy(path("specimen.wasm"), path("unsigned.wasm")).unwrap();
    let (ok, _, err) = op(&["plugin", "install", &path("unsigned.wasm")]);
    assert!(!ok && err.contains("not signed"), "{err}");
    let (ok, out, err) = op(&["plugin", "list"]);
    assert!(
        ok && out.lines().count() == 1,
        "nothing installed yet: {out}{err}"
    );
    let (ok, out, err) = op(&["plugin", "install", &path("specimen.wasm")]);
    assert!(
        ok && out.contains("Installed specimen 1.0.0") && out.contains("staged, signed by acme"),
        "{out}{err}"
    );
    let (ok, out, _) = op(&["plugin", "list"]);
    let row = out
        .lines()
        .find(|l| l.starts_with("specimen"))
        .unwrap_or("");
    assert!(
        ok && row.contains("1.0.0") && row.contains("staged") && row.contains("acme"),
        "{out}"
    );
    let (ok, out, err) = op(&["plugin", "activate", "specimen", "1.0.0"]);
    assert!(ok && out.contains("Activated specimen 1.0.0"), "{out}{err}");
    let (_, out, _) = op(&["plugin", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("specimen") && l.contains("active")),
        "{out}"
    );
    let (ok, _, err) = op(&["plugin", "rollback", "specimen"]);
    assert!(!ok && err.contains("no earlier good version"), "{err}");

    let db = panelink::storage::Db::connect(
        &test_db.url,
        std::sync::Arc::new(panelink::crypto::SecretBox::from_config(None, dir.path()).unwrap()),
    )
    .await
    .unwrap();
    let audit = db.audit_log(100).await.unwrap();
    for action in ["plugin.install", "plugin.activate"] {
        assert!(
            audit.iter().any(|e| e.actor == "cli"
                && e.action == action
                && e.target == "plugin:specimen@1.0.0"),
            "{action}: {audit:?}"
        );
    }
    db.close().await;
}

/// `panelink server import ID [--apply]`: the dry run writes nothing, `--apply` creates the
/// panel's accounts as services (the same rules as the admin API), and again creates none.
async fn server_import_from_the_command_line(backend: Backend) {
    use panel_sim::{PanelSim, SimConfig};
    use panelink::adapter::Secret;
    use panelink::model::{ApplicationId, Hostname, Name, Port, Username};
    use panelink::storage::{Actor, NewServer, ServiceFilter};

    let test_db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let sim = PanelSim::start(SimConfig::new().sample_accounts(3))
        .await
        .expect("panel-sim");
    let run_cli = |extra: &[&str]| {
        let mut args = vec![
            "panelink".to_owned(),
            "--data-dir".to_owned(),
            dir.path().display().to_string(),
            "--database-url".to_owned(),
            test_db.url.clone(),
            "--plugin-dir".to_owned(),
            panelink_tests::plugin_dir().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let cli = Cli::try_parse_from(args).unwrap();
        let config = cli.configuration(Vec::new()).unwrap();
        run(cli.command, config)
    };
    run_cli(&["migrate"]).await.unwrap();
    let config = Cli::try_parse_from([
        "panelink",
        "--data-dir",
        &dir.path().display().to_string(),
        "--database-url",
        &test_db.url,
        "migrate",
    ])
    .unwrap()
    .configuration(Vec::new())
    .unwrap();
    let db = panelink::boot::open_database(&config).await.unwrap();
    let (server, _) = db
        .create_server(
            &Actor::cli(),
            &NewServer {
                name: Name::parse("sim").unwrap(),
                module: ApplicationId::parse("cpanel").unwrap(),
                hostname: Hostname::parse("127.0.0.1").unwrap(),
                port: Port::new(i64::from(sim.addr().port())).unwrap(),
                secure: false,
                username: Username::parse(&sim.api_user()).unwrap(),
                api_token: Secret::new(sim.api_token()),
                enabled: true,
            },
            |_| None,
        )
        .await
        .unwrap();
    let id = server.id.to_string();
    let services = || async {
        db.services(ServiceFilter {
            server_id: Some(server.id),
            client_id: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.username)
        .collect::<Vec<_>>()
    };

    run_cli(&["server", "import", &id]).await.unwrap();
    assert!(services().await.is_empty(), "a dry run writes nothing");
    run_cli(&["server", "import", &id, "--apply"])
        .await
        .unwrap();
    assert_eq!(services().await, ["user1", "user2", "user3"]);
    run_cli(&["server", "import", &id, "--apply"])
        .await
        .unwrap();
    assert_eq!(services().await.len(), 3, "again: nothing new");
    let err = run_cli(&["server", "import", "999999"]).await.unwrap_err();
    assert!(err.to_string().contains("server not found"), "{err}");
    db.close().await;
    sim.shutdown().await;
}
