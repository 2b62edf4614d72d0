use station_core::redact::Secret;
use station_ui::{UiOptions, UiServeError, UiServer};

use crate::support::{FakeServices, Fixture};

fn token() -> Secret {
    Secret::new(format!("ui{}", "t".repeat(30)))
}

#[tokio::test]
async fn the_page_is_served_with_its_assets_and_a_strict_content_policy() {
    let ui = Fixture::start(UiOptions::default()).await;
    let res = ui.client.get(format!("{}/", ui.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<html lang=\"en\">") && html.contains("/app.js"),
        "{html}"
    );
    for asset in ["/app.js", "/app.css"] {
        let res = ui
            .client
            .get(format!("{}{asset}", ui.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{asset}");
    }
}

#[tokio::test]
async fn with_a_token_the_api_needs_it_and_the_page_shell_does_not() {
    let ui = Fixture::start(UiOptions {
        token: Some(token()),
        ..UiOptions::default()
    })
    .await;
    let page = ui.client.get(format!("{}/", ui.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (status, body) = ui.get("/api/sessions").await;
    assert_eq!(status, 401, "{body:#}");
    assert!(
        body["fix"].as_str().unwrap().contains("#token="),
        "{body:#}"
    );
    let res = ui
        .client
        .get(format!("{}/api/sessions", ui.base))
        .bearer_auth(token().expose())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let ui = Fixture::start(UiOptions::default()).await;
    for path in ["/", "/api/sessions"] {
        let res = ui
            .client
            .get(format!("{}{path}", ui.base))
            .header("Host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let body = res.text().await.unwrap();
        assert!(body.contains("stn ui"), "{body}");
        let res = ui
            .client
            .post(format!("{}/api/sessions", ui.base))
            .header("Origin", "https://evil.example")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
}

#[tokio::test]
async fn a_non_loopback_address_needs_remote_access_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let index = station_core::SessionIndex::open(dir.path()).unwrap();
    let service = station_core::SessionService::new(
        std::sync::Arc::new(crate::support::FakeBackend),
        index.clone(),
        station_core::RunOptions::default(),
    );
    let services = std::sync::Arc::new(FakeServices { service });
    let any: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = UiServer::new(index.clone(), services.clone())
        .bind(any, UiOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, UiServeError::NotLoopback { .. }), "{err}");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
    let err = UiServer::new(index.clone(), services.clone())
        .bind(
            any,
            UiOptions {
                allow_remote: true,
                ..UiOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UiServeError::TokenRequired { .. }), "{err}");
    let err = UiServer::new(index, services)
        .bind(
            "127.0.0.1:0".parse().unwrap(),
            UiOptions {
                token: Some(Secret::new("short")),
                ..UiOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UiServeError::WeakToken { len: 5 }), "{err}");
}
