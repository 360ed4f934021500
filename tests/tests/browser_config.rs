//! The deployment's settings reach the app with the page (`/config.json`): the login screen tells
//! the user when the organisation keeps an audit log of use, and not otherwise; a deployment that
//! forces public-computer mode preselects it and does not offer the personal choice; the app
//! tells the bridge its mode, which the audit of use records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{ensure, Result};
use sotto_tests::app::dist_dir;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{testid_selector, with_browser, Browser};
use sotto_tests::prosody::Prosody;

const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens the login screen and waits until the app has read `/config.json`.
async fn login_screen(b: &Browser, url: &str) -> Result<()> {
    b.goto(url).await?;
    b.wait_for_testid("login-submit", LOAD_TIMEOUT).await?;
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    loop {
        let form = b
            .client()
            .find(fantoccini::Locator::Css("form[data-deployment]"))
            .await?;
        if form.attr("data-deployment").await?.as_deref() == Some("loaded") {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the app never read /config.json"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has_testid(b: &Browser, testid: &str) -> Result<bool> {
    Ok(!b
        .client()
        .find_all(fantoccini::Locator::Css(&testid_selector(testid)))
        .await?
        .is_empty())
}

async fn checked(b: &Browser, testid: &str) -> Result<(bool, bool)> {
    let input = b
        .client()
        .find(fantoccini::Locator::Css(&testid_selector(testid)))
        .await?;
    let checked = input.prop("checked").await?.as_deref() == Some("true");
    let disabled = input.prop("disabled").await?.as_deref() == Some("true");
    Ok((checked, disabled))
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_config_audit_notice_and_forced_kiosk() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = Prosody::for_test("browser-config", &["alice"])?;
    let audit_path = prosody.dir().join("audit.jsonl");

    // Without audit and without [client]: no notice, personal mode preselected and offered.
    let plain = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = plain.http_url();
    with_browser("browser_config_default", async |b: &Browser| {
        login_screen(b, &url).await?;
        ensure!(
            !has_testid(b, "audit-notice").await?,
            "an audit notice without audit"
        );
        ensure!(checked(b, "login-mode-personal").await? == (true, false));
        ensure!(checked(b, "login-mode-kiosk").await? == (false, false));
        Ok(())
    })
    .await?;

    // With audit on and kiosk forced: the notice is shown, kiosk is chosen, personal is not offered.
    let audited = BridgeFixture::start(
        &prosody,
        Some(&dist),
        &format!(
            "[audit]\nenabled = true\npath = \"{}\"\n[client]\ndefault_mode = \"kiosk\"\nforce_kiosk = true\n",
            audit_path.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"")
        ),
    )
    .await?;
    let url = audited.http_url();
    with_browser("browser_config_audit", async |b: &Browser| {
        login_screen(b, &url).await?;
        let notice = b.wait_for_testid("audit-notice", LOAD_TIMEOUT).await?;
        let text = notice.text().await?;
        ensure!(
            text.contains("not what you write") || text.contains("never what you write"),
            "{text}"
        );
        ensure!(checked(b, "login-mode-kiosk").await? == (true, false));
        ensure!(checked(b, "login-mode-personal").await? == (false, true));
        std::fs::create_dir_all(sotto_tests::target_dir().join("screenshots"))?;
        b.screenshot(&sotto_tests::target_dir().join("screenshots/login-audit-notice.png"))
            .await?;
        // Signing in (kiosk, as forced): the audit records the login with the mode.
        sotto_tests::app::submit_login_form(b, "alice@localhost", "alice-pass").await?;
        sotto_tests::app::wait_text(b, "connection-state", "online", LOAD_TIMEOUT).await?;
        let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&audit_path).unwrap_or_default();
            let login = log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["event"] == "login" && v["account"] == "alice@localhost");
            if let Some(login) = login {
                ensure!(login["mode"] == "kiosk", "audit login line: {login}");
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no login in the audit log: {log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await?;
    Ok(())
}
