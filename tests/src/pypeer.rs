//! A Python XMPP peer for interop tests: `tests/interop/omemo_peer.py`, built on slixmpp and
//! slixmpp-omemo (python-omemo, python-oldmemo) — implementations nobody on the team wrote.
//!
//! [`ensure_venv`] creates `target/interop/venv` with the pinned packages of
//! `tests/interop/requirements.txt` (from PyPI, with the system's `python3 -m venv`); it is
//! idempotent and fast once the venv matches the requirements. It fails with a clear message
//! when Python, venv or PyPI are not available: nothing is skipped silently.
//!
//! [`PyPeer::start`] logs the peer in directly to a fixture Prosody (c2s on loopback, STARTTLS
//! with the fixture's CA). Commands go to its stdin as JSON lines; its events come back as
//! JSON lines (see the script's docstring). Dropping a peer kills the process.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::ports::{target_dir, workspace_root};
use crate::prosody::Prosody;

/// How long one peer event may take by default.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Serialises venv creation between the tests of one process; a lock file does it between
/// test processes.
static VENV: Mutex<()> = Mutex::new(());

/// The requirements file (pinned versions).
pub fn requirements_file() -> PathBuf {
    workspace_root().join("tests/interop/requirements.txt")
}

/// The peer script.
pub fn script() -> PathBuf {
    workspace_root().join("tests/interop/omemo_peer.py")
}

/// The venv's Python, after making sure the venv exists with the pinned requirements.
///
/// `SOTTO_INTEROP_PYTHON` overrides the interpreter used to create the venv (default
/// `python3`).
pub fn ensure_venv() -> Result<PathBuf> {
    let _guard = VENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join("interop");
    std::fs::create_dir_all(&dir)?;
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("sotto-requirements.txt");
    let wanted = std::fs::read_to_string(requirements_file())
        .with_context(|| format!("cannot read {}", requirements_file().display()))?;
    let ready = || python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted);
    if ready() {
        return Ok(python);
    }
    let _lock = FileLock::acquire(&dir.join("venv.lock"), Duration::from_secs(600))?;
    if ready() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let base = std::env::var("SOTTO_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&base)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .with_context(|| {
            format!("the interop tests need Python 3 with venv (Debian: python3-venv); cannot run {base:?}")
        })?;
    if !out.status.success() {
        bail!(
            "`{base} -m venv {}` failed (Debian: install python3-venv):\n{}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "-r",
        ])
        .arg(requirements_file())
        .output()
        .context("cannot run pip in the interop venv")?;
    if !out.status.success() {
        bail!(
            "pip could not install the interop peers' packages ({}; is PyPI reachable?):\n{}{}",
            requirements_file().display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&stamp, &wanted)?;
    Ok(python)
}

/// An exclusive lock file (created with `create_new`, holding the owner's pid); a lock whose
/// owner is gone, or older than `stale`, is taken over.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path, stale: Duration) -> Result<FileLock> {
        use std::io::Write as _;
        let start = Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return Ok(FileLock(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let old = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > stale);
                    let owner_gone = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                        .is_some_and(|pid| !crate::ports::process_alive(pid));
                    if old || owner_gone {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if start.elapsed() > stale {
                        bail!("timed out waiting for {}", path.display());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How to start a peer.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Bare or full JID of the account (`user@localhost[/resource]`).
    pub jid: String,
    /// Its password.
    pub password: String,
    /// The OMEMO state file; reuse it to keep the device across runs.
    pub store: PathBuf,
    /// Load slixmpp-omemo (false: a plain slixmpp client).
    pub omemo: bool,
}

impl PeerOptions {
    /// `user@localhost/resource` with the fixture password `<user>-pass`, OMEMO on, its state
    /// in `dir/<user>-<resource>.json`.
    pub fn fixture(dir: &Path, user: &str, resource: &str) -> Self {
        Self {
            jid: format!("{user}@localhost/{resource}"),
            password: format!("{user}-pass"),
            store: dir.join(format!("{user}-{resource}.json")),
            omemo: true,
        }
    }

    /// Without OMEMO.
    pub fn plain(mut self) -> Self {
        self.omemo = false;
        self
    }
}

/// A running peer.
pub struct PyPeer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read but not yet matched by [`PyPeer::expect`].
    pending: VecDeque<Value>,
    /// The `ready` event: `jid`, and with OMEMO `device` and `fingerprint`.
    pub ready: Value,
    log: PathBuf,
}

impl std::fmt::Debug for PyPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyPeer")
            .field("ready", &self.ready)
            .finish()
    }
}

impl PyPeer {
    /// Starts the peer against `prosody` and waits for its `ready` event (logged in, and with
    /// OMEMO its device list and bundle published).
    pub async fn start(prosody: &Prosody, options: PeerOptions) -> Result<PyPeer> {
        let python = tokio::task::spawn_blocking(ensure_venv).await??;
        let log = options.store.with_extension("log");
        if let Some(parent) = options.store.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut child = Command::new(python)
            .arg(script())
            .env("PEER_JID", &options.jid)
            .env("PEER_PASSWORD", &options.password)
            .env("PEER_HOST", prosody.c2s_addr().ip().to_string())
            .env("PEER_PORT", prosody.c2s_addr().port().to_string())
            .env("PEER_CA", prosody.ca_file())
            .env("PEER_STORE", &options.store)
            .env("PEER_OMEMO", if options.omemo { "1" } else { "0" })
            .env("PEER_LOG", &log)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the Python interop peer")?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin for the peer"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the peer"))?;
        let mut peer = PyPeer {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            pending: VecDeque::new(),
            ready: Value::Null,
            log,
        };
        peer.ready = peer
            .expect_timeout("ready", Duration::from_secs(60), |_| true)
            .await
            .with_context(|| format!("peer {} did not start", options.jid))?;
        Ok(peer)
    }

    /// The peer's OMEMO device id.
    pub fn device(&self) -> u32 {
        self.ready["device"]
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0)
    }

    /// The peer's full JID.
    pub fn jid(&self) -> String {
        self.ready["jid"].as_str().unwrap_or_default().to_owned()
    }

    /// Sends one command.
    pub async fn command(&mut self, command: Value) -> Result<()> {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .context("the peer's stdin is closed")?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// An OMEMO-encrypted message; waits for `sent` and returns the stanza id.
    pub async fn send(&mut self, to: &str, body: &str) -> Result<String> {
        self.command(json!({"cmd": "send", "to": to, "body": body}))
            .await?;
        let sent = self.expect("sent", |_| true).await?;
        Ok(sent["id"].as_str().unwrap_or_default().to_owned())
    }

    /// An OMEMO-encrypted correction (XEP-0308) of the message `replaces`; waits for `sent`
    /// and returns the correction's stanza id.
    pub async fn send_correction(
        &mut self,
        to: &str,
        body: &str,
        replaces: &str,
    ) -> Result<String> {
        self.command(json!({"cmd": "send", "to": to, "body": body, "replace": replaces}))
            .await?;
        let sent = self.expect("sent", |_| true).await?;
        Ok(sent["id"].as_str().unwrap_or_default().to_owned())
    }

    /// A retraction (XEP-0424) of our message `id`, unencrypted with a fallback body as
    /// Conversations and Dino send it; waits for `sent`.
    pub async fn retract(&mut self, to: &str, id: &str) -> Result<()> {
        self.command(json!({"cmd": "retract", "to": to, "id": id}))
            .await?;
        self.expect("sent", |_| true).await?;
        Ok(())
    }

    /// A plaintext message; waits for `sent`.
    pub async fn send_plain(&mut self, to: &str, body: &str) -> Result<String> {
        self.command(json!({"cmd": "send_plain", "to": to, "body": body}))
            .await?;
        let sent = self.expect("sent", |_| true).await?;
        Ok(sent["id"].as_str().unwrap_or_default().to_owned())
    }

    /// The peer's view of `jid`'s active OMEMO 0.3 devices (refreshed from PEP).
    pub async fn devices(&mut self, jid: &str) -> Result<Vec<u32>> {
        self.command(json!({"cmd": "devices", "jid": jid})).await?;
        let event = self.expect("devices", |_| true).await?;
        Ok(event["devices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().and_then(|d| u32::try_from(d).ok()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The next event named `event` for which `pick` holds (within [`EVENT_TIMEOUT`]). Other
    /// events stay queued for later calls; an `error` event fails.
    pub async fn expect(&mut self, event: &str, pick: impl FnMut(&Value) -> bool) -> Result<Value> {
        self.expect_timeout(event, EVENT_TIMEOUT, pick).await
    }

    /// [`PyPeer::expect`] with its own timeout.
    pub async fn expect_timeout(
        &mut self,
        event: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|v| v["event"] == event && pick(v))
        {
            if let Some(v) = self.pending.remove(i) {
                return Ok(v);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let value = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Err(_) => bail!(
                    "the peer sent no {event:?} event within {timeout:?}; unmatched: {:?}\n--- {} ---\n{}",
                    self.pending,
                    self.log.display(),
                    crate::ports::tail(&self.log, 30)
                ),
                Ok(line) => {
                    let line = line?.ok_or_else(|| {
                        anyhow!(
                            "the peer exited while we waited for {event:?}\n--- {} ---\n{}",
                            self.log.display(),
                            crate::ports::tail(&self.log, 30)
                        )
                    })?;
                    serde_json::from_str::<Value>(&line)
                        .with_context(|| format!("not JSON from the peer: {line}"))?
                }
            };
            if value["event"] == "error" {
                bail!("the peer failed while we waited for {event:?}: {value}");
            }
            if value["event"] == event && pick(&value) {
                return Ok(value);
            }
            self.pending.push_back(value);
        }
    }

    /// Events received so far that no [`PyPeer::expect`] took, after reading what arrives
    /// within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(line) = tokio::time::timeout_at(deadline, self.lines.next_line()).await {
            match line? {
                Some(line) => {
                    let value: Value = serde_json::from_str(&line)
                        .with_context(|| format!("not JSON from the peer: {line}"))?;
                    self.pending.push_back(value);
                }
                None => break,
            }
        }
        Ok(self.pending.drain(..).collect())
    }

    /// Asks the peer to disconnect and waits for it to exit.
    pub async fn quit(mut self) -> Result<()> {
        self.command(json!({"cmd": "quit"})).await?;
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .context("the peer did not exit")??;
        if !status.success() {
            bail!("the peer exited with {status}");
        }
        Ok(())
    }
}
