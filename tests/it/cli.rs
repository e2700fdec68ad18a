//! The `panelink` command line in-process: configuration precedence (file < environment <
//! flags), `migrate`, and `admin create` bootstrapping an empty database.

use clap::Parser;
use panelink::cli::{Cli, run};
use panelink::config::LogFormat;

use crate::harness::{Backend, TestDb, on_both};

on_both!(configuration_migrate_and_admin_create);

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
