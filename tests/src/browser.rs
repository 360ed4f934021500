//! Headless Debian Chromium driven through `chromedriver` (W3C WebDriver) with fantoccini.
//!
//! Each [`Browser`] gets its own chromedriver on a free loopback port and its own scratch
//! directory `target/browser-profiles/NAME-PID-SEQ/` holding the Chromium profile (`profile/`,
//! see [`Browser::profile_dir`]), a private `HOME` (`home/`) and `chromedriver.log`. Every
//! process the browser starts has that unique path on its command line, which is how
//! [`Browser::close`] and `Drop` make sure none survives (session delete, then chromedriver's
//! process group, then a `/proc` sweep for the path).

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::ports::{
    accepts_tcp, free_loopback_port, fresh_dir, kill_by_cmdline, loopback, sanitize, send_signal,
    tail, target_dir, terminate_child,
};

/// How long [`Browser::start`] waits for chromedriver to listen.
pub const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);

/// The Chromium binary: `$SOTTO_CHROMIUM` if set, else Debian's `/usr/bin/chromium`.
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("SOTTO_CHROMIUM")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The chromedriver binary: `$SOTTO_CHROMEDRIVER` if set, else `chromedriver` on `PATH`.
pub fn chromedriver_binary() -> PathBuf {
    std::env::var_os("SOTTO_CHROMEDRIVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromedriver"))
}

/// A headless Chromium session and the chromedriver serving it.
pub struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    test_name: String,
    scratch_dir: PathBuf,
    profile_dir: PathBuf,
    /// `"<scratch_dir>/"`: appears on the command line of chromedriver and of every Chromium
    /// process (and is unique), so a `/proc` sweep for it finds exactly our processes.
    marker: String,
    console: Mutex<Vec<String>>,
    closed: bool,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("test_name", &self.test_name)
            .field("driver_url", &self.driver_url)
            .field("driver_pid", &self.driver.id())
            .field("profile_dir", &self.profile_dir)
            .finish()
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session with a fresh
    /// profile under `target/browser-profiles/`, capturing the browser console log.
    pub async fn start(test_name: &str) -> Result<Browser> {
        Self::start_with_args(test_name, &[]).await
    }

    /// [`Browser::start`] with extra Chromium switches (e.g. `--host-resolver-rules=…` to give a
    /// loopback server a domain name).
    pub async fn start_with_args(test_name: &str, extra_args: &[String]) -> Result<Browser> {
        let scratch_dir = fresh_dir("browser-profiles", test_name)?;
        let profile_dir = scratch_dir.join("profile");
        let home = scratch_dir.join("home");
        std::fs::create_dir_all(&profile_dir)?;
        std::fs::create_dir_all(&home)?;
        let marker = format!("{}/", scratch_dir.to_string_lossy());
        let log_path = scratch_dir.join("chromedriver.log");

        let mut last_error = None;
        for _attempt in 0..3 {
            let port = free_loopback_port()?;
            let mut driver = Command::new(chromedriver_binary())
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log_path.display()))
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Own process group, so close/Drop can signal chromedriver and whatever it spawned.
                .process_group(0)
                .spawn()
                .with_context(|| {
                    format!(
                        "cannot run {} (is Debian's chromium-driver package installed?)",
                        chromedriver_binary().display()
                    )
                })?;
            match wait_for_driver(&mut driver, port, &log_path).await {
                Ok(()) => {
                    let driver_url = format!("http://127.0.0.1:{port}/");
                    let client = match connect(&driver_url, &profile_dir, extra_args).await {
                        Ok(c) => c,
                        Err(e) => {
                            terminate_child(&mut driver, Duration::from_secs(2), true);
                            kill_by_cmdline(&marker, Duration::from_secs(5));
                            return Err(e.context(format!(
                                "chromedriver log tail ({}):\n{}",
                                log_path.display(),
                                tail(&log_path, 30)
                            )));
                        }
                    };
                    return Ok(Browser {
                        client,
                        driver,
                        driver_url,
                        test_name: test_name.to_owned(),
                        scratch_dir,
                        profile_dir,
                        marker,
                        console: Mutex::new(Vec::new()),
                        closed: false,
                    });
                }
                Err(e) => {
                    terminate_child(&mut driver, Duration::from_secs(2), true);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("chromedriver did not start")))
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Chromium's `--user-data-dir` (left in place after close, for residue scans; removed
    /// automatically by a later run once this process has exited).
    pub fn profile_dir(&self) -> &Path {
        &self.profile_dir
    }

    /// The scratch directory holding `profile/`, `home/` (Chromium's `HOME`) and
    /// `chromedriver.log`.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch_dir
    }

    /// The name given to [`Browser::start`].
    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// chromedriver's base URL (`http://127.0.0.1:PORT/`).
    pub fn driver_url(&self) -> &str {
        &self.driver_url
    }

    /// Navigates and waits for the page load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("navigating to {url}"))
    }

    /// Waits until an element matching `[data-testid="TESTID"]` exists.
    pub async fn wait_for_testid(&self, testid: &str, timeout: Duration) -> Result<Element> {
        let selector = testid_selector(testid);
        match self
            .client
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(&selector))
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                Err(anyhow!(e).context(format!(
                    "no element {selector} within {timeout:?} (page: {url})"
                )))
            }
        }
    }

    /// Every browser console entry seen so far in this session, oldest first, as
    /// `LEVEL message` (e.g. `INFO http://127.0.0.1:1234/app.js 1:9 "fixture-ok"`).
    ///
    /// chromedriver's log endpoint (`POST /session/{id}/se/log {"type":"browser"}`) returns only
    /// entries not fetched before, so the fixture accumulates them.
    pub async fn console_log(&self) -> Result<Vec<String>> {
        let fresh = self.fetch_console().await?;
        let mut all = self
            .console
            .lock()
            .map_err(|_| anyhow!("console log lock poisoned"))?;
        all.extend(fresh);
        Ok(all.clone())
    }

    async fn fetch_console(&self) -> Result<Vec<String>> {
        let value = match self.client.issue_cmd(GetLog { legacy: false }).await {
            Ok(v) => v,
            // Older/other drivers only have the JSON-wire path.
            Err(CmdError::Standard(_)) | Err(CmdError::NotW3C(_)) => self
                .client
                .issue_cmd(GetLog { legacy: true })
                .await
                .context("fetching the browser console log")?,
            Err(e) => return Err(anyhow!(e).context("fetching the browser console log")),
        };
        let entries = value
            .as_array()
            .ok_or_else(|| anyhow!("unexpected log response: {value}"))?;
        Ok(entries
            .iter()
            .map(|e| {
                let level = e.get("level").and_then(Value::as_str).unwrap_or("?");
                let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                format!("{level} {message}")
            })
            .collect())
    }

    /// Writes a PNG screenshot of the current viewport to `path` (parent directories created).
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// The directory for this test's artifacts: `target/test-artifacts/<test_name>/`.
    pub fn artifacts_dir(&self) -> PathBuf {
        target_dir()
            .join("test-artifacts")
            .join(sanitize(&self.test_name))
    }

    /// Saves `<label>.png` (screenshot) and `<label>.log` (console log so far, plus the current
    /// URL) under [`Browser::artifacts_dir`]; returns that directory. Tries both even if one fails.
    pub async fn save_artifacts(&self, label: &str) -> Result<PathBuf> {
        let dir = self.artifacts_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let label = sanitize(label);
        let shot = self.screenshot(&dir.join(format!("{label}.png"))).await;
        let url = self.client.current_url().await.map(|u| u.to_string());
        let log = self.console_log().await;
        let mut text = String::new();
        text.push_str(&format!("# test: {}\n", self.test_name));
        match &url {
            Ok(u) => text.push_str(&format!("# url: {u}\n")),
            Err(e) => text.push_str(&format!("# url: <{e}>\n")),
        }
        match &log {
            Ok(lines) => {
                for line in lines {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            Err(e) => text.push_str(&format!("# console log unavailable: {e:#}\n")),
        }
        std::fs::write(dir.join(format!("{label}.log")), text)?;
        shot?;
        log?;
        Ok(dir)
    }

    /// Ends the WebDriver session (Chromium quits), stops chromedriver and makes sure no process
    /// of this browser remains. Call at the end of a passing test.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        let session =
            tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        // Synchronous and short (bounded by a few seconds); fine on any runtime flavour.
        let survivors = self.stop_processes();
        match session {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(anyhow!(e).context("ending the WebDriver session")),
            Err(_) => bail!("ending the WebDriver session timed out"),
        }
        if !survivors.is_empty() {
            bail!("browser processes survived SIGKILL: {survivors:?}");
        }
        Ok(())
    }

    /// SIGTERM chromedriver's group, then SIGKILL, then sweep `/proc` for our marker path.
    fn stop_processes(&mut self) -> Vec<u32> {
        terminate_child(&mut self.driver, Duration::from_secs(3), true);
        kill_by_cmdline(&self.marker, Duration::from_secs(5))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.closed {
            // No async here: kill everything synchronously. (The fantoccini session task may
            // still try to delete the session; chromedriver is gone by then, which is harmless.)
            send_signal(self.driver.id(), "KILL", true);
            let _ = self.driver.kill();
            let _ = self.driver.wait();
        }
        let _ = kill_by_cmdline(&self.marker, Duration::from_secs(5));
    }
}

/// Runs a browser test body; on error or panic saves `failure.png` / `failure.log` under
/// `target/test-artifacts/<test_name>/` before closing the browser, then returns the error
/// (with the artifacts' location) or resumes the panic.
///
/// The body is an async closure borrowing the browser:
/// `with_browser("name", async |b| { b.goto(&url).await?; Ok(()) }).await`
pub async fn with_browser<F>(test_name: &str, body: F) -> Result<()>
where
    F: AsyncFnOnce(&Browser) -> Result<()>,
{
    with_browser_args(test_name, &[], body).await
}

/// [`with_browser`] with extra Chromium switches.
pub async fn with_browser_args<F>(test_name: &str, extra_args: &[String], body: F) -> Result<()>
where
    F: AsyncFnOnce(&Browser) -> Result<()>,
{
    let browser = Browser::start_with_args(test_name, extra_args).await?;
    let outcome = std::panic::AssertUnwindSafe(body(&browser))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(())) => browser.close().await,
        Ok(Err(e)) => {
            let saved = browser.save_artifacts("failure").await;
            let _ = browser.close().await;
            Err(match saved {
                Ok(dir) => e.context(format!("browser artifacts saved in {}", dir.display())),
                Err(s) => e.context(format!("(saving browser artifacts failed too: {s:#})")),
            })
        }
        Err(panic) => {
            match browser.save_artifacts("failure").await {
                Ok(dir) => eprintln!("browser artifacts saved in {}", dir.display()),
                Err(s) => eprintln!("saving browser artifacts failed: {s:#}"),
            }
            let _ = browser.close().await;
            std::panic::resume_unwind(panic)
        }
    }
}

/// Like [`with_browser`] for bodies written as `|b| async move { … }` returning a boxed future
/// (`.boxed()`), for callers that cannot use async closures.
pub async fn with_browser_boxed<F>(test_name: &str, body: F) -> Result<()>
where
    F: for<'a> FnOnce(
        &'a Browser,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>,
{
    with_browser(test_name, async |b: &Browser| body(b).await).await
}

/// `[data-testid="…"]` with the value escaped for CSS.
pub fn testid_selector(testid: &str) -> String {
    format!(
        "[data-testid=\"{}\"]",
        testid.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

async fn wait_for_driver(driver: &mut Child, port: u16, log_path: &Path) -> Result<()> {
    let started = Instant::now();
    let addr = loopback(port);
    loop {
        if let Some(status) = driver.try_wait()? {
            bail!(
                "chromedriver exited during startup ({status}); log tail ({}):\n{}",
                log_path.display(),
                tail(log_path, 30)
            );
        }
        let ready = tokio::task::spawn_blocking(move || accepts_tcp(addr))
            .await
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if started.elapsed() > DRIVER_TIMEOUT {
            bail!(
                "chromedriver did not listen on {addr} within {DRIVER_TIMEOUT:?}; log tail ({}):\n{}",
                log_path.display(),
                tail(log_path, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(driver_url: &str, profile_dir: &Path, extra_args: &[String]) -> Result<Client> {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-breakpad".into(),
        "--password-store=basic".into(),
        format!("--user-data-dir={}", profile_dir.display()),
        "--window-size=1280,900".into(),
    ];
    args.extend_from_slice(extra_args);
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium_binary(),
            "args": args,
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let Value::Object(caps) = caps else {
        bail!("capabilities must be an object")
    };
    let client = tokio::time::timeout(
        Duration::from_secs(60),
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(driver_url),
    )
    .await
    .map_err(|_| anyhow!("starting the Chromium session timed out"))?
    .context("starting the Chromium session")?;
    Ok(client)
}

/// `POST /session/{id}/se/log {"type":"browser"}` (or legacy `/session/{id}/log`).
#[derive(Debug)]
struct GetLog {
    legacy: bool,
}

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or("none");
        let path = if self.legacy {
            format!("session/{session}/log")
        } else {
            format!("session/{session}/se/log")
        };
        base_url.join(&path)
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
