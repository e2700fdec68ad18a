//! The Plesk plugin's logic, compiled natively, against plesk-sim over real HTTP: the same
//! functions the component runs, with a blocking transport in place of the host's `http` import.

use panelink_whm::api::{HttpError, HttpResponse};
use plesk::model::{AccountWork, Credential, LinkTemplate, Operation, PluginError, Server};
use plesk::plugin::{self, Transport};
use plesk_sim::{ButtonProps, FaultKind, Owner, PleskConfig, PleskHandle, PleskSim};

struct Http {
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
    login: String,
    password: String,
    lines: Vec<String>,
}

impl Http {
    fn to(sim: &PleskHandle) -> Self {
        let (login, password) = sim.admin();
        Http {
            runtime: tokio::runtime::Handle::current(),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            login,
            password,
            lines: Vec::new(),
        }
    }
}

impl Transport for Http {
    fn post_xml(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
        let request = self
            .client
            .post(url)
            .header("content-type", "text/xml")
            .header("HTTP_AUTH_LOGIN", &self.login)
            .header("HTTP_AUTH_PASSWD", &self.password)
            .body(body);
        tokio::task::block_in_place(|| {
            self.runtime.block_on(async move {
                let response = request
                    .send()
                    .await
                    .map_err(|e| HttpError::Connection(e.to_string()))?;
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| HttpError::Connection(e.to_string()))?;
                Ok(HttpResponse {
                    status,
                    body: body.to_vec(),
                })
            })
        })
    }

    fn debug(&mut self, message: &str) {
        self.lines.push(message.to_owned());
    }
}

fn server(sim: &PleskHandle) -> Server {
    Server {
        hostname: sim.addr().ip().to_string(),
        port: sim.addr().port(),
        secure: false,
        username: sim.admin().0,
    }
}

fn templates(label_suffix: &str) -> Vec<LinkTemplate> {
    panelink_whm::links::LINKS
        .iter()
        .zip(1..)
        .map(|(l, order)| LinkTemplate {
            scope: l.scope.to_owned(),
            label: format!("{}{label_suffix}", l.default_label),
            order,
            token_url: String::new(),
            url: format!(
                "https://billing.example/sso/link/{{handle}}?scope={}",
                l.scope
            ),
        })
        .collect()
}

fn account(user: &str, links: &[LinkTemplate]) -> AccountWork {
    AccountWork {
        username: user.to_owned(),
        domain: format!("{user}.example.test"),
        service_id: format!("svc-{user}"),
        credential: Credential::LinkHandle(format!("handle-{user}")),
        ensure_group: true,
        links: links.iter().map(|t| t.scope.clone()).collect(),
        remove: Vec::new(),
    }
}

fn foreign() -> ButtonProps {
    ButtonProps {
        place: "client".into(),
        url: "https://billing.example/sso/link/mine?scope=clientarea:invoices".into(),
        text: "My own".into(),
        conhelp: Some("Mine (PANELINK)".into()),
        ..ButtonProps::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_check_reads_protocols_and_version() {
    let sim = PleskSim::start(PleskConfig::new()).await.unwrap();
    let mut http = Http::to(&sim);
    let support = plugin::check_server(&mut http, &server(&sim)).unwrap();
    assert!(support.supported, "{}", support.detail);
    assert!(
        support.detail.contains("Plesk 18.0.61"),
        "{}",
        support.detail
    );

    sim.set_version("10.4.4", ["1.6.3.4", "1.6.3.0"]);
    let support = plugin::check_server(&mut http, &server(&sim)).unwrap();
    assert!(!support.supported);
    assert!(support.detail.contains("11.0"), "{}", support.detail);
    // A server that lists the protocol but runs an older Plesk is refused too.
    sim.set_version("10.4.4", ["1.6.3.5"]);
    assert!(
        !plugin::check_server(&mut http, &server(&sim))
            .unwrap()
            .supported
    );

    http.password = "wrong".into();
    let err = plugin::check_server(&mut http, &server(&sim)).unwrap_err();
    assert!(
        matches!(&err, PluginError::Panel(m) if m.contains("1001")),
        "{err:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_a_batch_in_three_packets_with_per_account_errors() {
    let sim = PleskSim::start(PleskConfig::new().sample_customers(3))
        .await
        .unwrap();
    let mut http = Http::to(&sim);
    let user1 = sim.customer_id("user1").unwrap();
    let mine = sim.add_button(Owner::Customer(user1), foreign());
    let links = templates("");
    let accounts = [
        account("user1", &links),
        account("ghost", &links),
        account("user2", &links),
    ];
    sim.reset_counters();
    let outcomes =
        plugin::provision(&mut http, &server(&sim), "PANELINK", &links, &accounts).unwrap();
    assert_eq!(sim.counters().calls("packet"), 3);
    assert_eq!(sim.counters().calls("ui/create-custombutton"), 28);
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[1].username, "ghost");
    assert_eq!(outcomes[1].results.len(), 1);
    assert_eq!(
        outcomes[1].results[0].error.as_deref(),
        Some("customer does not exist")
    );
    for outcome in [&outcomes[0], &outcomes[2]] {
        assert_eq!(outcome.results.len(), 15, "{outcome:?}");
        assert!(
            outcome.results.iter().all(|r| r.error.is_none()),
            "{outcome:?}"
        );
        assert_eq!(outcome.results[0].op, Operation::EnsureGroup);
    }
    for user in ["user1", "user2"] {
        let id = sim.customer_id(user).unwrap();
        let ours: Vec<_> = sim
            .buttons_of(user)
            .into_iter()
            .filter(|b| {
                b.props
                    .conhelp
                    .as_deref()
                    .is_some_and(|h| h.contains("(PANELINK_"))
            })
            .collect();
        assert_eq!(ours.len(), 14);
        for (button, (link, order)) in ours.iter().zip(panelink_whm::links::LINKS.iter().zip(1..)) {
            assert_eq!(button.owner, Owner::Customer(id));
            assert_eq!(button.props.text, link.default_label);
            assert_eq!(button.props.sort_key, Some(order));
            assert_eq!(button.props.place, "client");
            assert_eq!(button.props.public, Some(false));
            assert_eq!(
                button.props.url,
                format!(
                    "https://billing.example/sso/link/handle-{user}?scope={}",
                    link.scope
                )
            );
            assert_eq!(
                button.props.conhelp.as_deref(),
                Some(
                    format!(
                        "{} ({})",
                        link.default_label,
                        panelink_whm::links::app_name("PANELINK", link.scope)
                    )
                    .as_str()
                )
            );
        }
    }
    assert!(sim.buttons_of("user3").is_empty());
    assert!(
        http.lines.iter().all(|l| !l.contains("handle-")),
        "{:?}",
        http.lines
    );

    // Again: idempotent, replaced rather than duplicated; the customer's own button untouched.
    plugin::provision(&mut http, &server(&sim), "PANELINK", &links, &accounts[..1]).unwrap();
    assert_eq!(sim.buttons_of("user1").len(), 15);
    assert!(sim.buttons_of("user1").iter().any(|b| b.id == mine));

    // An update is delete + create of that scope only; a removal deletes only its scope.
    let renamed = templates(" (new)");
    let mut change = account("user1", &renamed[13..]);
    change.ensure_group = false;
    change.remove = vec![renamed[0].scope.clone()];
    let before: Vec<u32> = sim.buttons_of("user1").iter().map(|b| b.id).collect();
    let outcome =
        plugin::provision(&mut http, &server(&sim), "PANELINK", &renamed, &[change]).unwrap();
    assert_eq!(outcome[0].results.len(), 2);
    assert!(outcome[0].results.iter().all(|r| r.error.is_none()));
    let after = sim.buttons_of("user1");
    assert_eq!(after.len(), 14);
    assert!(
        after
            .iter()
            .any(|b| b.props.text == "View Invoice History (new)")
    );
    assert!(!after.iter().any(|b| b.props.text == "View Invoice History"));
    assert!(!after.iter().any(|b| b.props.text == "Upgrade/Downgrade"));
    assert_eq!(after.iter().filter(|b| before.contains(&b.id)).count(), 13);

    let listed = plugin::list_links(&mut http, &server(&sim), "PANELINK", "user1").unwrap();
    assert_eq!(listed.len(), 13);
    assert!(listed.iter().all(|l| l.scope.is_some()));

    let outcomes = plugin::deprovision(
        &mut http,
        &server(&sim),
        "PANELINK",
        &["user1".into(), "ghost".into(), "user2".into()],
    )
    .unwrap();
    assert_eq!(outcomes[0].results.len(), 15);
    assert!(outcomes[0].results.iter().all(|r| r.error.is_none()));
    assert_eq!(
        outcomes[1].results[0].error.as_deref(),
        Some("customer does not exist")
    );
    assert_eq!(sim.buttons_of("user1").len(), 1);
    assert_eq!(sim.buttons_of("user1")[0].id, mine);
    assert!(sim.buttons_of("user2").is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_accounts_and_reports_faults_as_transient() {
    let sim = PleskSim::start(
        PleskConfig::new()
            .sample_customers(2)
            .customer("carol", Vec::<String>::new()),
    )
    .await
    .unwrap();
    sim.set_suspended("user2", true);
    let mut http = Http::to(&sim);
    let accounts = plugin::list_accounts(&mut http, &server(&sim)).unwrap();
    assert_eq!(accounts.len(), 3);
    assert_eq!(accounts[0].username, "user1");
    assert_eq!(accounts[0].domain, "user1.example.test");
    assert!(!accounts[0].suspended);
    assert!(accounts[1].suspended);
    assert_eq!(accounts[2].domain, "");
    assert_eq!(accounts[2].owner, None);

    sim.inject_faults(FaultKind::Http500, 1);
    let links = templates("");
    let err = plugin::provision(
        &mut http,
        &server(&sim),
        "PANELINK",
        &links,
        &[account("user1", &links)],
    )
    .unwrap_err();
    assert!(matches!(err, PluginError::Transient(_)), "{err:?}");
    sim.inject_faults(FaultKind::DropConnection, 1);
    let err = plugin::list_accounts(&mut http, &server(&sim)).unwrap_err();
    assert!(matches!(err, PluginError::Transient(_)), "{err:?}");
    assert!(sim.buttons().is_empty());
    sim.shutdown().await;
}
