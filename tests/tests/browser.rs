//! Browser suite: the dist site, served by the real bridge in front of a real Prosody, in
//! headless Chromium. Test names start with `browser_` (`cargo xtask test --quick` skips them).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use sotto_tests::app::{dist_dir, save_screenshot, submit_login_form, wait_css_text, wait_text};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{testid_selector, with_browser, Browser};
use sotto_tests::http::{get, get_with};
use sotto_tests::prosody::Prosody;

const APP_VERSION: &str = env!("CARGO_PKG_VERSION");
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

fn start_prosody(name: &str) -> Result<Prosody> {
    Prosody::for_test(name, &[])
}

/// The first-load assets that index.html references, in order.
fn referenced_assets(index: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in index.split(attr).skip(1) {
            if let Some(value) = part.split('"').next() {
                if !value.contains("://") && !value.starts_with('#') {
                    out.push(value.trim_start_matches('/').to_owned());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_login_screen_renders_under_production_csp() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-login-screen")?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;

    // The headers the browser will enforce.
    let index = get(bridge.addr(), "/").await?;
    assert_eq!(index.status, 200);
    let csp = index
        .header("content-security-policy")
        .context("no CSP")?
        .to_owned();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
        "{csp}"
    );
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(index.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    // Subresource Integrity on every script and stylesheet; no inline script.
    for tag in index
        .body
        .split('<')
        .filter(|t| t.starts_with("script") || t.starts_with("link rel=\"stylesheet\""))
    {
        assert!(tag.contains("integrity=\"sha384-"), "no SRI on <{tag}");
    }
    assert!(
        !index.body.contains("<script>") && !index.body.contains("<style"),
        "{}",
        index.body
    );
    // Hashed assets are immutable and served pre-compressed.
    for asset in referenced_assets(&index.body)
        .iter()
        .filter(|a| a.contains('-'))
    {
        let response = get_with(
            bridge.addr(),
            &format!("/{asset}"),
            &[("Accept-Encoding", "br, gzip")],
        )
        .await?;
        assert_eq!(response.status, 200, "{asset}");
        assert_eq!(response.header("content-encoding"), Some("br"), "{asset}");
        assert!(
            response
                .header("cache-control")
                .is_some_and(|c| c.contains("immutable")),
            "{asset}"
        );
    }

    let url = bridge.http_url();
    with_browser("browser_login_screen", async |b: &Browser| {
        b.goto(&url).await?;
        let version = b.wait_for_testid("app-version", LOAD_TIMEOUT).await?;
        let text = version.text().await?;
        ensure!(text.contains(APP_VERSION), "version shown: {text:?}");
        for testid in ["login-jid", "login-password", "login-mode-kiosk", "login-submit", "connection-state"] {
            b.wait_for_testid(testid, Duration::from_secs(2)).await?;
        }
        let state = b.wait_for_testid("connection-state", Duration::from_secs(2)).await?.text().await?;
        ensure!(state == "offline", "connection state: {state:?}");

        // The CSP is enforced: a script injected into the page does not run.
        let ran = b
            .client()
            .execute(
                "const s = document.createElement('script'); s.textContent = 'window.__injected = 1;'; \
                 document.body.appendChild(s); return window.__injected === 1;",
                vec![],
            )
            .await?;
        ensure!(ran == serde_json::Value::Bool(false), "an injected inline script ran");
        let log = b.console_log().await?;
        ensure!(
            log.iter().any(|l| l.contains("Content Security Policy")),
            "the CSP violation was not reported: {log:?}"
        );
        // Nothing else went wrong while loading (favicon requests aside).
        let errors: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with("SEVERE") && !l.contains("favicon") && !l.contains("Content Security Policy"))
            .collect();
        ensure!(errors.is_empty(), "console errors: {errors:?}");
        save_screenshot(b, "login").await?;
        Ok(())
    })
    .await?;
    bridge.stop().await?;
    Ok(())
}

/// Subresource Integrity really guards the wasm: a site whose wasm differs by one byte from the
/// one its bootstrap names must not start, and must say so.
/// The login screen says the rest of the app could not be loaded, and nothing is connected.
async fn expect_load_failure(b: &Browser) -> Result<()> {
    wait_css_text(
        b,
        &testid_selector("login-notice"),
        "could not finish loading",
        LOAD_TIMEOUT,
    )
    .await?;
    wait_text(b, "connection-state", "offline", LOAD_TIMEOUT).await
}

/// A copy of the built site in which the wasm files that `tamper` picks have one byte more
/// (and no pristine compressed copies).
fn tampered_site(dir_name: &str, tamper: impl Fn(&str) -> bool) -> Result<std::path::PathBuf> {
    let dist = dist_dir()?;
    let tampered = sotto_tests::test_dir(dir_name)?;
    let mut changed = 0;
    for entry in std::fs::read_dir(&dist)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".br"))
            .unwrap_or(&name);
        if stem != name && stem.ends_with(".wasm") && tamper(stem) {
            continue; // serve the tampered file itself, not a pristine compressed copy
        }
        let mut bytes = std::fs::read(entry.path())?;
        if name.ends_with(".wasm") && tamper(&name) {
            bytes.push(0);
            changed += 1;
        }
        std::fs::write(tampered.join(&name), bytes)?;
    }
    if changed == 0 {
        bail!("no wasm to tamper with in {}", dist.display());
    }
    Ok(tampered)
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_tampered_wasm_is_refused() -> Result<()> {
    let tampered = tampered_site("browser-tampered-site", |_| true)?;
    let prosody = start_prosody("browser-tampered")?;
    let bridge = BridgeFixture::start(&prosody, Some(Path::new(&tampered)), "").await?;
    let url = bridge.http_url();
    with_browser("browser_tampered_wasm", async |b: &Browser| {
        b.goto(&url).await?;
        let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
        loop {
            let boot = b
                .client()
                .execute(
                    "const e = document.querySelector('.boot'); return e ? e.textContent : '';",
                    vec![],
                )
                .await?;
            let boot = boot.as_str().unwrap_or_default().to_owned();
            if boot.contains("could not start") {
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no start failure shown: {boot:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let app = b
            .client()
            .execute(
                "return document.getElementById('app').children.length;",
                vec![],
            )
            .await?;
        ensure!(
            app == serde_json::json!(0),
            "the app rendered from a tampered wasm"
        );
        let log = b.console_log().await?;
        ensure!(
            log.iter().any(|l| l.contains("integrity")),
            "no SRI failure logged: {log:?}"
        );
        Ok(())
    })
    .await?;
    bridge.stop().await?;
    Ok(())
}

/// The messenger's module (fetched once the login form is used) is integrity-checked too: a
/// tampered copy never runs, the login screen says so, and nothing connects to the server.
#[tokio::test(flavor = "multi_thread")]
async fn browser_tampered_messenger_is_refused() -> Result<()> {
    let tampered = tampered_site("browser-tampered-messenger", |name| {
        name.starts_with("messenger-")
    })?;
    let prosody = Prosody::for_test("browser-tampered-messenger", &["alice"])?;
    let bridge = BridgeFixture::start(&prosody, Some(Path::new(&tampered)), "").await?;
    let url = bridge.http_url();
    with_browser("browser_tampered_messenger", async |b: &Browser| {
        b.goto(&url).await?;
        b.wait_for_testid("login-jid", LOAD_TIMEOUT).await?;
        submit_login_form(b, "alice@localhost", "alice-pass").await?;
        expect_load_failure(b).await?;
        let log = b.console_log().await?;
        ensure!(
            log.iter().any(|l| l.contains("integrity")),
            "no SRI failure logged: {log:?}"
        );
        Ok(())
    })
    .await?;
    let metrics = get(bridge.addr(), "/metrics").await?.body;
    ensure!(
        metrics
            .lines()
            .any(|l| l.trim() == "sotto_bridge_connections_total 0"),
        "a connection reached the bridge although the messenger never ran:\n{metrics}"
    );
    bridge.stop().await?;
    Ok(())
}

/// A web server for the built site whose answer for the messenger's module never comes (as
/// behind a captive portal or a stalled proxy); every other file is served plainly.
async fn serve_site_stalling_the_messenger(
    dist: std::path::PathBuf,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let dist = dist.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let name = match path.trim_start_matches('/') {
                    "" => "index.html".to_owned(),
                    other => other.to_owned(),
                };
                if name.starts_with("messenger-") {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let file = (!name.contains("..") && !name.contains('/'))
                    .then(|| std::fs::read(dist.join(&name)).ok())
                    .flatten();
                let response = match file {
                    Some(body) => {
                        let kind = match name.rsplit('.').next() {
                            Some("html") => "text/html; charset=utf-8",
                            Some("js") => "text/javascript",
                            Some("css") => "text/css",
                            Some("wasm") => "application/wasm",
                            _ => "application/octet-stream",
                        };
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((addr, task))
}

/// A messenger's module that never arrives does not leave "Signing in…" on screen: after
/// `sotto_app::LOAD_TIMEOUT_MS` the login screen says the app could not finish loading.
#[tokio::test(flavor = "multi_thread")]
async fn browser_stalled_messenger_fetch_is_reported() -> Result<()> {
    let (addr, server) = serve_site_stalling_the_messenger(dist_dir()?).await?;
    let url = format!("http://{addr}/");
    let result = with_browser("browser_stalled_messenger", async |b: &Browser| {
        b.goto(&url).await?;
        b.wait_for_testid("login-jid", LOAD_TIMEOUT).await?;
        submit_login_form(b, "alice@localhost", "alice-pass").await?;
        wait_text(b, "connection-state", "connecting", LOAD_TIMEOUT).await?;
        expect_load_failure(b).await
    })
    .await;
    server.abort();
    result
}
