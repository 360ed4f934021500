//! The web app in headless Chromium against slixmpp-omemo (`tests/interop/omemo_peer.py`), an
//! OMEMO implementation nobody on the team wrote: the app signs in through the real bridge, the
//! Python peer logs in to the same real Prosody directly, and they chat encrypted both ways.
//! Driven only through the app's `data-testid` hooks. The test name starts with `browser_`
//! (`cargo xtask test --quick` skips it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fantoccini::Locator;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{with_browser, Browser};
use sotto_tests::prosody::Prosody;
use sotto_tests::pypeer::{PeerOptions, PyPeer};

const LOAD: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(20);
const ENTER: &str = "\u{E007}";

/// The built site: `SOTTO_DIST_DIR` (set by `cargo xtask test`) or `target/dist`.
fn dist_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("SOTTO_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sotto_tests::target_dir().join("dist"));
    ensure!(
        dir.join("index.html").is_file(),
        "no built client in {} — run `cargo xtask dist` (cargo xtask test does it for you)",
        dir.display()
    );
    Ok(dir)
}

async fn wait_css(
    b: &Browser,
    css: &str,
    timeout: Duration,
) -> Result<fantoccini::elements::Element> {
    b.client()
        .wait()
        .at_most(timeout)
        .every(Duration::from_millis(100))
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no element {css} within {timeout:?}"))
}

/// Waits until some element matching `css` has text containing `needle`; returns it.
async fn wait_css_text(
    b: &Browser,
    css: &str,
    needle: &str,
    timeout: Duration,
) -> Result<fantoccini::elements::Element> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for e in b
            .client()
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            if e.text().await.is_ok_and(|t| t.contains(needle)) {
                return Ok(e);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no {css} containing {needle:?} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_attr(
    e: &fantoccini::elements::Element,
    attr: &str,
    expected: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = e.attr(attr).await?;
        if value.as_deref() == Some(expected) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{attr} did not become {expected:?} within {timeout:?} (last: {value:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn type_into(b: &Browser, testid: &str, text: &str) -> Result<()> {
    let e = b.wait_for_testid(testid, STEP).await?;
    e.click().await?;
    e.send_keys(text).await?;
    Ok(())
}

async fn click(b: &Browser, testid: &str) -> Result<()> {
    b.wait_for_testid(testid, STEP).await?.click().await?;
    Ok(())
}

fn contact_css(jid: &str) -> String {
    format!("[data-testid=\"contact\"][data-jid=\"{jid}\"]")
}

fn message_css(direction: &str) -> String {
    format!("[data-testid=\"message\"][data-direction=\"{direction}\"]")
}

async fn wait_connection_online(b: &Browser) -> Result<()> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let state = match b
            .client()
            .find(Locator::Css("[data-testid=\"connection-state\"]"))
            .await
        {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if state.trim() == "online" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the app did not come online (last state {state:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_app_and_slixmpp_omemo_chat_encrypted_both_ways() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = Prosody::for_test("interop-browser-omemo", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();
    let mut bob = PyPeer::start(
        &prosody,
        PeerOptions::fixture(&prosody.dir().join("peers"), "bob", "py"),
    )
    .await?;
    let to_bob = "interop browser secret: from the web app";
    let to_alice = "interop browser secret: from slixmpp-omemo";

    with_browser("interop_browser_omemo_alice", async |alice: &Browser| {
        alice.client().set_window_size(1200, 900).await?;
        alice.goto(&url).await?;
        alice.wait_for_testid("login-jid", LOAD).await?;
        type_into(alice, "login-jid", "alice@localhost").await?;
        type_into(alice, "login-password", "alice-pass").await?;
        click(alice, "login-submit").await?;
        wait_connection_online(alice).await?;

        // alice adds bob; slixmpp authorises and asks back; the app approves (by itself,
        // having asked first, or when alice clicks).
        type_into(alice, "contact-add-jid", "bob@localhost").await?;
        click(alice, "contact-add-submit").await?;
        if let Ok(e) = wait_css(
            alice,
            "[data-testid=\"subscription-approve\"][data-jid=\"bob@localhost\"]",
            Duration::from_secs(3),
        )
        .await
        {
            e.click().await?;
        }
        let contact = wait_css(alice, &contact_css("bob@localhost"), STEP).await?;
        wait_attr(&contact, "data-subscription", "both", STEP).await?;
        contact.click().await?;
        wait_css(
            alice,
            "[data-testid=\"lock-state\"][data-lock=\"encrypted\"][data-encrypted=\"true\"]",
            STEP,
        )
        .await
        .context("the lock did not close: the app does not see bob's OMEMO device")?;

        // The app → slixmpp-omemo.
        type_into(alice, "chat-input", &format!("{to_bob}{ENTER}")).await?;
        let sent = wait_css_text(alice, &message_css("out"), to_bob, STEP).await?;
        ensure!(
            sent.attr("data-encrypted").await?.as_deref() == Some("true"),
            "not sent encrypted"
        );
        let got = bob.expect("message", |_| true).await?;
        ensure!(got["body"] == to_bob && got["encrypted"] == true, "{got}");

        // slixmpp-omemo → the app.
        bob.send("alice@localhost", to_alice).await?;
        let shown = wait_css_text(alice, &message_css("in"), to_alice, STEP)
            .await
            .context("bob's message was not decrypted by the app")?;
        ensure!(
            shown.attr("data-encrypted").await?.as_deref() == Some("true"),
            "shown as not encrypted"
        );
        ensure!(
            alice
                .client()
                .find_all(Locator::Css("[data-testid=\"decrypt-error\"]"))
                .await?
                .is_empty(),
            "a decryption error is shown"
        );
        Ok(())
    })
    .await?;
    bob.quit().await?;
    bridge.stop().await?;
    Ok(())
}
