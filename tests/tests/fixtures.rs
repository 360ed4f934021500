//! Self-tests of the fixtures, against the real components (Debian's prosody, chromium,
//! chromedriver and openssl). No mocks.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::FutureExt;
use sotto_tests::browser::{with_browser, Browser};
use sotto_tests::ports::{pids_with_cmdline_containing, process_alive};
use sotto_tests::prosody::{c2s_stream_features, Prosody, ProsodyOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn prosody_starts_registers_requires_starttls_and_stops() -> Result<()> {
    let dir = sotto_tests::test_dir("fixture-prosody")?;
    let started = Instant::now();
    let prosody = Prosody::start(ProsodyOptions {
        dir: dir.clone(),
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    eprintln!(
        "prosody started in {:?} on {}",
        started.elapsed(),
        prosody.c2s_addr()
    );
    assert!(prosody.c2s_addr().ip().is_loopback());
    assert!(prosody.websocket_url().is_none());
    assert!(prosody.ca_file().is_file());
    let pid = prosody.pid();
    assert!(process_alive(pid));
    // mod_posix writes the pidfile (used to stop a leftover Prosody of a killed test run).
    let pidfile = std::fs::read_to_string(dir.join("prosody.pid")).context("pidfile")?;
    assert_eq!(pidfile.trim(), pid.to_string());
    assert!(Prosody::start(ProsodyOptions {
        dir: dir.clone(),
        domain: "bad domain".into(),
        websocket: false,
        plaintext_c2s: false,
    })
    .is_err());

    assert!(!prosody.user_exists("alice"));
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    prosody.register("alice", "alice-new-pass")?; // re-register = password change
    assert!(prosody.user_exists("alice"));
    assert!(prosody.user_exists("Bob"), "user names are case-folded");
    assert!(!prosody.user_exists("carol"));
    assert!(prosody
        .data_dir()
        .join("localhost/accounts/alice.dat")
        .is_file());

    let features = c2s_stream_features(prosody.c2s_addr(), "localhost", Duration::from_secs(5))?;
    eprintln!("{features}");
    ensure!(
        features.contains("<stream:features"),
        "no features: {features}"
    );
    let starttls = features
        .split("<starttls")
        .nth(1)
        .context("no <starttls offered")?;
    let starttls = &starttls[..starttls
        .find("</starttls>")
        .context("unterminated <starttls>")?];
    ensure!(
        starttls.contains("urn:ietf:params:xml:ns:xmpp-tls"),
        "{features}"
    );
    ensure!(
        starttls.contains("<required/>"),
        "STARTTLS not required: {features}"
    );
    ensure!(
        !features.contains("<mechanism>"),
        "SASL offered before TLS: {features}"
    );

    // Nothing outside the fixture directory: the config and log point inside it.
    let config = std::fs::read_to_string(prosody.config_file())?;
    assert!(config.contains("c2s_require_encryption = true"));
    assert!(
        !config.contains("/var/") && !config.contains("/etc/"),
        "{config}"
    );

    drop(prosody);
    assert!(
        wait_gone(pid, Duration::from_secs(2)),
        "prosody {pid} still running after drop"
    );

    // Restart in the same directory: accounts persist, ports change, certificates are reused.
    let ca_before = std::fs::read(dir.join("certs/ca.pem"))?;
    let prosody = Prosody::start(ProsodyOptions {
        dir: dir.clone(),
        domain: "localhost".into(),
        websocket: true,
        plaintext_c2s: false,
    })?;
    assert!(prosody.user_exists("alice") && prosody.user_exists("bob"));
    assert_eq!(std::fs::read(prosody.ca_file())?, ca_before);
    let ws = prosody.websocket_url().context("websocket url")?;
    assert!(
        ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/xmpp-websocket"),
        "{ws}"
    );
    // The same directory cannot be used twice at once...
    let second = Prosody::start(ProsodyOptions {
        dir: dir.clone(),
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    });
    let err = second
        .err()
        .context("a second Prosody in the same dir should fail")?;
    ensure!(format!("{err:#}").contains("in use"), "{err:#}");
    let pid = prosody.pid();
    drop(prosody);
    assert!(
        wait_gone(pid, Duration::from_secs(2)),
        "prosody {pid} still running after drop"
    );

    // ...but an orphaned Prosody (its test process was killed: parent is now PID 1) is stopped.
    let status = std::process::Command::new("setsid")
        .arg("-f")
        .arg("prosody")
        .arg("--config")
        .arg(dir.join("prosody.cfg.lua"))
        .arg("-F")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    ensure!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphan = loop {
        let pid = std::fs::read_to_string(dir.join("prosody.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid.filter(|p| process_alive(*p)) {
            break pid;
        }
        ensure!(Instant::now() < deadline, "orphan prosody did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let prosody = Prosody::start(ProsodyOptions {
        dir: dir.clone(),
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    ensure!(!process_alive(orphan), "orphan {orphan} survived");
    ensure!(prosody.pid() != orphan);
    drop(prosody);
    Ok(())
}

/// A tiny static site: `/` has an element with a data-testid and loads `/app.js`, which logs.
async fn serve_static(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                match stream.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
            let request = String::from_utf8_lossy(&buf[..len]).into_owned();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, content_type, body): (&str, &str, &str) = match path.as_str() {
                "/" => (
                    "200 OK",
                    "text/html; charset=utf-8",
                    "<!doctype html><html><head><title>fixture</title></head><body>\
                     <h1 data-testid=\"fixture-heading\">Fixture page</h1>\
                     <script src=\"/app.js\"></script></body></html>",
                ),
                "/app.js" => (
                    "200 OK",
                    "text/javascript; charset=utf-8",
                    "console.log(\"fixture-ok\");\n\
                     document.body.insertAdjacentHTML('beforeend', '<p data-testid=\"from-script\">script ran</p>');\n",
                ),
                _ => ("404 Not Found", "text/plain", "not found"),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_loads_page_captures_console_and_cleans_up() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(serve_static(listener));

    let started = Instant::now();
    let browser = Browser::start("fixture-browser").await?;
    eprintln!("browser started in {:?}", started.elapsed());
    let profile = browser.profile_dir().to_path_buf();
    let marker = browser.scratch_dir().to_string_lossy().into_owned() + "/";
    assert!(profile.starts_with(sotto_tests::target_dir().join("browser-profiles")));
    ensure!(
        !pids_with_cmdline_containing(&marker).is_empty(),
        "no chromium/chromedriver process found"
    );

    browser.goto(&url).await?;
    let heading = browser
        .wait_for_testid("fixture-heading", Duration::from_secs(10))
        .await?;
    assert_eq!(heading.text().await?, "Fixture page");
    browser
        .wait_for_testid("from-script", Duration::from_secs(10))
        .await?;
    let missing = browser
        .wait_for_testid("does-not-exist", Duration::from_millis(300))
        .await;
    assert!(missing.is_err());

    let log = browser.console_log().await?;
    eprintln!("console: {log:?}");
    ensure!(
        log.iter().any(|l| l.contains("fixture-ok")),
        "console log lacks fixture-ok: {log:?}"
    );
    // Entries accumulate (the driver endpoint drains).
    let again = browser.console_log().await?;
    ensure!(again.iter().any(|l| l.contains("fixture-ok")), "{again:?}");

    let dir = browser.save_artifacts("self-test").await?;
    let png = std::fs::read(dir.join("self-test.png"))?;
    ensure!(
        png.len() > 100 && png.starts_with(b"\x89PNG"),
        "not a PNG ({} bytes)",
        png.len()
    );
    let saved_log = std::fs::read_to_string(dir.join("self-test.log"))?;
    ensure!(saved_log.contains("fixture-ok"), "{saved_log}");

    let closing = Instant::now();
    browser.close().await?;
    eprintln!("browser closed in {:?}", closing.elapsed());
    let left = pids_with_cmdline_containing(&marker);
    ensure!(left.is_empty(), "processes left after close: {left:?}");
    ensure!(profile.is_dir(), "profile should remain for residue scans");

    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_browser_saves_failure_artifacts_and_drop_kills() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(serve_static(listener));

    // A failing body: artifacts are saved, the browser is closed, the error comes back.
    let mut marker = String::new();
    let result = with_browser("fixture-with-browser", async |b: &Browser| {
        marker = b.scratch_dir().to_string_lossy().into_owned() + "/";
        b.goto(&url).await?;
        b.wait_for_testid("fixture-heading", Duration::from_secs(10))
            .await?;
        bail!("deliberate failure")
    })
    .await;
    let err = result.err().context("with_browser should fail")?;
    let text = format!("{err:#}");
    ensure!(
        text.contains("deliberate failure") && text.contains("test-artifacts"),
        "{text}"
    );
    let artifacts = sotto_tests::target_dir().join("test-artifacts/fixture-with-browser");
    ensure!(std::fs::metadata(artifacts.join("failure.png"))?.len() > 100);
    ensure!(std::fs::read_to_string(artifacts.join("failure.log"))?.contains("fixture-ok"));
    ensure!(!marker.is_empty() && pids_with_cmdline_containing(&marker).is_empty());

    // A panicking body: artifacts saved, browser closed, the panic propagates.
    let panicked =
        std::panic::AssertUnwindSafe(with_browser("fixture-panic", async |b: &Browser| {
            b.goto(&url).await?;
            b.wait_for_testid("fixture-heading", Duration::from_secs(10))
                .await?;
            #[allow(clippy::panic)]
            {
                panic!("deliberate panic");
            }
        }))
        .catch_unwind()
        .await;
    ensure!(panicked.is_err(), "the panic should propagate");
    let artifacts = sotto_tests::target_dir().join("test-artifacts/fixture-panic");
    ensure!(std::fs::metadata(artifacts.join("failure.png"))?.len() > 100);
    ensure!(pids_with_cmdline_containing("browser-profiles/fixture-panic-").is_empty());

    // Drop without close still leaves nothing behind.
    let browser = Browser::start("fixture-drop").await?;
    let marker = browser.scratch_dir().to_string_lossy().into_owned() + "/";
    browser.goto(&url).await?;
    drop(browser);
    let left = pids_with_cmdline_containing(&marker);
    ensure!(left.is_empty(), "processes left after drop: {left:?}");

    server.abort();
    Ok(())
}
