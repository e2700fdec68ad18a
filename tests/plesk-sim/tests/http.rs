//! plesk-sim over real HTTP: authentication headers, content type, packets, faults, counters.

use std::time::Duration;

use plesk_sim::{FaultKind, PleskConfig, PleskSim};

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Result<(u16, String)> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut request = client.post(url).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

const PROTOS: &str =
    r#"<packet version="1.6.3.5"><server><get_protos/><get><stat/></get></server></packet>"#;

#[tokio::test]
async fn answers_packets_with_login_or_key() {
    let sim = PleskSim::start(PleskConfig::new().sample_customers(2).secret_key("k3y"))
        .await
        .unwrap();
    let (login, password) = sim.admin();
    let xml = ("content-type", "text/xml");
    let (status, body) = post(
        &sim.agent_url(),
        &[
            xml,
            ("HTTP_AUTH_LOGIN", &login),
            ("HTTP_AUTH_PASSWD", &password),
        ],
        PROTOS,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("<proto>1.6.3.5</proto>"), "{body}");
    assert!(
        body.contains("<plesk_version>18.0.61</plesk_version>"),
        "{body}"
    );
    let (_, body) = post(&sim.agent_url(), &[xml, ("KEY", "k3y")], PROTOS)
        .await
        .unwrap();
    assert!(
        body.contains("<get_protos><result><status>ok</status>"),
        "{body}"
    );

    // Checkup failures: HTTP 200 with a system error.
    for (headers, code) in [
        (
            vec![
                xml,
                ("HTTP_AUTH_LOGIN", login.as_str()),
                ("HTTP_AUTH_PASSWD", "wrong"),
            ],
            "1001",
        ),
        (vec![xml], "1001"),
        (vec![xml, ("KEY", "nope")], "11003"),
        (vec![("content-type", "text/plain"), ("KEY", "k3y")], "1014"),
    ] {
        let (status, body) = post(&sim.agent_url(), &headers, PROTOS).await.unwrap();
        assert_eq!(status, 200);
        assert!(
            body.contains(&format!(
                "<system><status>error</status><errcode>{code}</errcode>"
            )),
            "{body}"
        );
    }
    let counters = sim.counters();
    assert_eq!(counters.calls("server/get_protos"), 2);
    assert_eq!(counters.calls("packet"), 2);
    assert_eq!(counters.auth_failures, 3);
    let (status, _) = post(&format!("{}/api/v2/clients", sim.base_url()), &[xml], "")
        .await
        .unwrap();
    assert_eq!(status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_change_nothing_and_old_servers_refuse_ui() {
    let sim = PleskSim::start(
        PleskConfig::new()
            .sample_customers(1)
            .secret_key("k")
            .old_version(),
    )
    .await
    .unwrap();
    let create = r#"<packet version="1.6.3.5"><ui><create-custombutton><owner><customer-id>1</customer-id></owner><properties><place>client</place><url>https://x.test/</url><text>X</text></properties></create-custombutton></ui></packet>"#;
    let headers = [("content-type", "text/xml"), ("KEY", "k")];
    let (_, body) = post(&sim.agent_url(), &headers, create).await.unwrap();
    assert!(body.contains("<errcode>1005</errcode>"), "{body}");
    sim.set_version("18.0.61", plesk_sim::DEFAULT_PROTOS.iter().copied());

    sim.inject_faults(FaultKind::Http500, 1);
    let (status, _) = post(&sim.agent_url(), &headers, create).await.unwrap();
    assert_eq!(status, 500);
    sim.inject_faults(FaultKind::DropConnection, 1);
    assert!(post(&sim.agent_url(), &headers, create).await.is_err());
    assert!(sim.buttons().is_empty());
    sim.inject_faults(FaultKind::Http500AfterWork, 1);
    let (status, _) = post(&sim.agent_url(), &headers, create).await.unwrap();
    assert_eq!(status, 500);
    assert_eq!(sim.buttons_of("user1").len(), 1);
    assert_eq!(sim.counters().faults_of(FaultKind::Http500), 1);

    sim.set_request_latency(Duration::from_millis(1));
    let (_, body) = post(&sim.agent_url(), &headers, create).await.unwrap();
    assert!(body.contains("<status>ok</status><id>2</id>"), "{body}");
    sim.shutdown().await;
}
