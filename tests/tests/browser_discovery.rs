//! Signing in with an account of a domain the page's own bridge does not relay: refused with a
//! clear message before anything is sent (the default), or — when the deployment allows other
//! servers (`[client] other_servers`) — the domain's WebSocket endpoint is found through its
//! host-meta (XEP-0156) and the app connects there directly, not through the page's bridge.
//!
//! Chromium's `--host-resolver-rules` gives the loopback servers their domain names: the
//! account domain `localhost` resolves to the bridge that relays it (port included), so
//! `http://localhost/.well-known/host-meta.json` is that bridge's document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sotto_tests::app::{click, dist_dir, type_into, wait_css_text, wait_text};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{with_browser_args, Browser};
use sotto_tests::http::get;
use sotto_tests::prosody::Prosody;

const STEP: Duration = Duration::from_secs(30);

/// The bridge's `sotto_bridge_connections_total`.
async fn connections_total(bridge: SocketAddr) -> Result<u64> {
    let metrics = get(bridge, "/metrics").await?.body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("sotto_bridge_connections_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no sotto_bridge_connections_total in /metrics")
}

/// Opens the login screen of `url`, waits for the deployment settings, signs in as `jid`.
async fn sign_in(b: &Browser, url: &str, jid: &str, password: &str) -> Result<()> {
    b.goto(url).await?;
    b.wait_for_testid("login-jid", STEP).await?;
    wait_css_text(b, "form[data-deployment=\"loaded\"] button", "", STEP).await?;
    type_into(b, "login-jid", jid).await?;
    type_into(b, "login-password", password).await?;
    click(b, "login-mode-kiosk").await?;
    click(b, "login-submit").await
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_discovery_other_servers() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = Prosody::for_test("browser-discovery", &["alice"])?;
    // Two pages that relay only `elsewhere.test`: one allows other servers, one does not.
    let open_page = BridgeFixture::start_for(
        &prosody,
        "elsewhere.test",
        Some(&dist),
        "[client]\nother_servers = true\n",
    )
    .await?;
    let closed_page = BridgeFixture::start_for(&prosody, "elsewhere.test", Some(&dist), "").await?;
    // The account's own service: relays `localhost`, announces itself in host-meta, and
    // accepts WebSockets from the open page's origin (as a server must for any web client
    // served from elsewhere: Prosody's `cross_domain_websocket`, the bridge's
    // `allowed_origins`).
    let home = BridgeFixture::start(
        &prosody,
        None,
        &format!(
            "allowed_origins = [\"{}\"]\n",
            open_page.http_url().trim_end_matches('/')
        ),
    )
    .await?;
    let rules = format!(
        "--host-resolver-rules=MAP localhost {}, MAP nowhere.test 127.0.0.1:9",
        home.addr()
    );
    with_browser_args("browser_discovery", &[rules], async |b: &Browser| {
        // Not served here, other servers off: said at once, nothing sent anywhere.
        sign_in(b, &closed_page.http_url(), "alice@localhost", "alice-pass").await?;
        wait_css_text(
            b,
            "[data-testid=\"login-notice\"]",
            "localhost is not served here",
            STEP,
        )
        .await?;
        ensure!(connections_total(closed_page.addr()).await? == 0);
        ensure!(connections_total(home.addr()).await? == 0);

        // A domain with no host-meta: a clear error, no connection.
        sign_in(b, &open_page.http_url(), "alice@nowhere.test", "alice-pass").await?;
        wait_css_text(
            b,
            "[data-testid=\"login-notice\"]",
            "Cannot find the chat server of nowhere.test",
            STEP,
        )
        .await?;
        ensure!(connections_total(open_page.addr()).await? == 0);

        // Other servers on: localhost's host-meta names its bridge, the app signs in there.
        sign_in(b, &open_page.http_url(), "alice@localhost", "alice-pass").await?;
        wait_text(b, "connection-state", "online", STEP).await?;
        ensure!(
            connections_total(home.addr()).await? == 1,
            "the session did not go to the account's own service"
        );
        ensure!(
            connections_total(open_page.addr()).await? == 0,
            "the page's bridge relayed a domain it does not serve"
        );
        click(b, "logout").await?;
        Ok(())
    })
    .await?;
    home.stop().await?;
    open_page.stop().await?;
    closed_page.stop().await?;
    Ok(())
}
