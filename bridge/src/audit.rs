//! The audit log of use (`[audit]`): append-only JSON lines recording logins, logouts, session
//! resumptions and policy refusals. Never content: no body, subject, OMEMO payload, key or
//! password ever reaches this module — the events below carry only addresses, names of rules
//! and the kind of client.
//!
//! Lines are written off the hot path: sessions hand a finished line to a bounded channel and a
//! dedicated thread appends it. When the channel is full the line is dropped, counted in
//! `/metrics` (`sotto_bridge_audit_lines_dropped_total`) and reported in the log. The file is
//! rotated by size (`path` → `path.1` → … → `path.N`, oldest deleted) and created with mode 0600.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::AuditConfig;

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 4096;
/// XEP-0198 resumption ids remembered to name the resource of a resumed session.
const RESUMABLE_MAX: usize = 10_000;

/// One thing worth recording. Only addresses and names: there is deliberately no field that
/// could hold a stanza's content.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A resource was bound after authentication.
    Login {
        /// Bare JID of the account.
        account: &'a str,
        /// The bound resource.
        resource: Option<&'a str>,
        /// `personal` or `kiosk`, when the client said so.
        mode: Option<&'a str>,
        /// The client's address (written only with `log_ip = true`).
        ip: Option<IpAddr>,
    },
    /// A XEP-0198 session was resumed.
    Resume {
        /// Bare JID of the account.
        account: &'a str,
        /// The resource, when this bridge saw the session start.
        resource: Option<&'a str>,
        /// `personal` or `kiosk`, when the client said so.
        mode: Option<&'a str>,
        /// The client's address (written only with `log_ip = true`).
        ip: Option<IpAddr>,
    },
    /// A logged-in session ended.
    Logout {
        /// Bare JID of the account.
        account: &'a str,
        /// The resource.
        resource: Option<&'a str>,
        /// `close` (the client logged out), `connection_lost` (the server keeps the session
        /// resumable for a while), `server` (the server ended it), `idle` (the idle timeout;
        /// resumable), `error` (a stream error) or `shutdown` (the bridge stopped; resumable).
        how: &'a str,
    },
    /// A stanza was refused by the policy.
    Refusal {
        /// Bare JID of the account.
        account: &'a str,
        /// The resource.
        resource: Option<&'a str>,
        /// The rule (`domain`, `e2e`, `upload_service`, `upload_size`).
        rule: &'a str,
        /// `message`, `presence` or `iq`.
        stanza: &'a str,
        /// The domain it was addressed to.
        target_domain: Option<&'a str>,
        /// The member's group, when a group's rules applied.
        group: Option<&'a str>,
    },
}

#[derive(Default)]
struct Stats {
    written: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Resumable {
    map: HashMap<String, String>,
    order: VecDeque<String>,
}

/// The audit log; a disabled one records nothing.
pub struct Audit {
    tx: Option<SyncSender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
    log_ip: bool,
    stats: Arc<Stats>,
    resumable: Mutex<Resumable>,
}

impl Audit {
    /// An audit log that records nothing.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            writer: None,
            log_ip: false,
            stats: Arc::default(),
            resumable: Mutex::default(),
        }
    }

    /// Opens (creating, mode 0600) the file and starts the writer thread, or returns a disabled
    /// log when `config.enabled` is false.
    pub fn start(config: &AuditConfig) -> std::io::Result<Self> {
        let path = match (&config.enabled, &config.path) {
            (true, Some(path)) => path.clone(),
            _ => return Ok(Self::disabled()),
        };
        let file = open_append(&path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            size: file.metadata().map(|m| m.len()).unwrap_or(0),
            file,
            path,
            rotate_bytes: config.rotate_bytes,
            keep_files: config.keep_files,
            stats: stats.clone(),
            failing: false,
        };
        let writer = std::thread::Builder::new()
            .name("sotto-audit".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
            log_ip: config.log_ip,
            stats,
            resumable: Mutex::default(),
        })
    }

    /// Whether lines are recorded.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one event (never blocks).
    pub fn record(&self, event: Event<'_>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let line = self.line(event, SystemTime::now());
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let dropped = self.stats.dropped.fetch_add(1, Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "audit log cannot keep up: lines dropped (see sotto_bridge_audit_lines_dropped_total)"
                    );
                }
            }
        }
    }

    /// Remembers which full JID a XEP-0198 resumption id belongs to (memory only, bounded).
    pub fn remember_resumable(&self, previd: &str, full_jid: &str) {
        if !self.enabled() {
            return;
        }
        let Ok(mut r) = self.resumable.lock() else {
            return;
        };
        if r.map
            .insert(previd.to_owned(), full_jid.to_owned())
            .is_none()
        {
            r.order.push_back(previd.to_owned());
        }
        while r.order.len() > RESUMABLE_MAX {
            if let Some(old) = r.order.pop_front() {
                r.map.remove(&old);
            }
        }
    }

    /// The full JID a resumption id was issued to, if this bridge saw it.
    pub fn resumable(&self, previd: &str) -> Option<String> {
        self.resumable
            .lock()
            .ok()
            .and_then(|r| r.map.get(previd).cloned())
    }

    /// Metrics lines (Prometheus text format) for the audit log.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP sotto_bridge_audit_lines_total Audit lines written.\n# TYPE sotto_bridge_audit_lines_total counter\nsotto_bridge_audit_lines_total {}\n\
# HELP sotto_bridge_audit_lines_dropped_total Audit lines lost because the writer could not keep up or the file could not be written.\n# TYPE sotto_bridge_audit_lines_dropped_total counter\nsotto_bridge_audit_lines_dropped_total {}\n",
            self.stats.written.load(Relaxed),
            self.stats.dropped.load(Relaxed)
        )
    }

    fn line(&self, event: Event<'_>, now: SystemTime) -> String {
        let mut fields: Vec<(&str, Option<String>)> = vec![("time", Some(rfc3339(now)))];
        let ip = |ip: Option<IpAddr>| {
            if self.log_ip {
                ip.map(|ip| ip.to_string())
            } else {
                None
            }
        };
        let own = |s: Option<&str>| s.map(str::to_owned);
        match event {
            Event::Login {
                account,
                resource,
                mode,
                ip: addr,
            }
            | Event::Resume {
                account,
                resource,
                mode,
                ip: addr,
            } => {
                let name = if matches!(event, Event::Login { .. }) {
                    "login"
                } else {
                    "resume"
                };
                fields.push(("event", Some(name.into())));
                fields.push(("account", Some(account.into())));
                fields.push(("resource", own(resource)));
                fields.push(("mode", own(mode)));
                if self.log_ip {
                    fields.push(("ip", ip(addr)));
                }
            }
            Event::Logout {
                account,
                resource,
                how,
            } => {
                fields.push(("event", Some("logout".into())));
                fields.push(("account", Some(account.into())));
                fields.push(("resource", own(resource)));
                fields.push(("how", Some(how.into())));
            }
            Event::Refusal {
                account,
                resource,
                rule,
                stanza,
                target_domain,
                group,
            } => {
                fields.push(("event", Some("refusal".into())));
                fields.push(("account", Some(account.into())));
                fields.push(("resource", own(resource)));
                fields.push(("rule", Some(rule.into())));
                fields.push(("stanza", Some(stanza.into())));
                fields.push(("target_domain", own(target_domain)));
                if group.is_some() {
                    fields.push(("group", own(group)));
                }
            }
        }
        let mut out = String::from("{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(key));
            out.push(':');
            match value {
                Some(v) => out.push_str(&json_string(v)),
                None => out.push_str("null"),
            }
        }
        out.push('}');
        out
    }
}

impl Drop for Audit {
    /// Writes what is still queued before the bridge exits: closing the channel ends the
    /// writer thread once it has drained it (at most one queue's worth of lines).
    fn drop(&mut self) {
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

struct Writer {
    file: File,
    path: PathBuf,
    size: u64,
    rotate_bytes: u64,
    keep_files: u32,
    stats: Arc<Stats>,
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<String>) {
        while let Ok(line) = rx.recv() {
            self.write(line);
        }
        let _ = self.file.sync_all();
    }

    fn write(&mut self, mut line: String) {
        line.push('\n');
        let len = line.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.rotate_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "audit log rotation failed; still appending to the current file");
            }
        }
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.size = self.size.saturating_add(len);
                self.stats.written.fetch_add(1, Relaxed);
                self.failing = false;
            }
            Err(e) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                if !self.failing {
                    tracing::warn!(error = %e, "cannot write the audit log: lines dropped");
                    self.failing = true;
                }
            }
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let _ = self.file.sync_all();
        if self.keep_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep_files));
            for n in (1..self.keep_files).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T18:27:53.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_631_273_123);
        assert_eq!(rfc3339(t), "2026-11-25T18:27:53.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sotto-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits up to 10 s: each rotation syncs the file to disk, which can take a while on a
    /// machine busy compiling and running other tests (2 s was once too little).
    fn wait_for_lines(audit: &Audit, n: u64) {
        for _ in 0..1000 {
            if audit.stats.written.load(Relaxed) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("audit lines not written");
    }

    #[test]
    fn lines_ip_only_when_configured_and_rotation() {
        let dir = temp_dir("rotate");
        let path = dir.join("audit.jsonl");
        let config = AuditConfig {
            enabled: true,
            path: Some(path.clone()),
            log_ip: false,
            rotate_bytes: 4096,
            keep_files: 2,
        };
        let audit = Audit::start(&config).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..150 {
            audit.record(Event::Login {
                account: "alice@example.org",
                resource: Some("phone\"1"),
                mode: Some("kiosk"),
                ip: Some(ip),
            });
        }
        wait_for_lines(&audit, 150);
        let current = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(current.lines().next().unwrap()).unwrap();
        assert_eq!(first["event"], "login");
        assert_eq!(first["resource"], "phone\"1");
        assert!(first.get("ip").is_none());
        assert!(dir.join("audit.jsonl.1").is_file());
        assert!(dir.join("audit.jsonl.2").is_file());
        assert!(!dir.join("audit.jsonl.3").exists());
        for file in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] {
            let len = std::fs::metadata(dir.join(file)).unwrap().len();
            assert!(len <= 4096, "{file}: {len}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let with_ip = Audit::start(&AuditConfig {
            log_ip: true,
            path: Some(dir.join("ip.jsonl")),
            ..config
        })
        .unwrap();
        with_ip.record(Event::Resume {
            account: "alice@example.org",
            resource: None,
            mode: None,
            ip: Some(ip),
        });
        wait_for_lines(&with_ip, 1);
        let line: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("ip.jsonl")).unwrap()).unwrap();
        assert_eq!(line["ip"], "192.0.2.7");
        assert_eq!(line["resource"], serde_json::Value::Null);
        assert!(with_ip
            .render_metrics()
            .contains("sotto_bridge_audit_lines_total 1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = sync_channel(1);
        let audit = Audit {
            tx: Some(tx),
            writer: None,
            log_ip: false,
            stats: Arc::default(),
            resumable: Mutex::default(),
        };
        for _ in 0..3 {
            audit.record(Event::Logout {
                account: "a@example.org",
                resource: None,
                how: "close",
            });
        }
        assert!(audit
            .render_metrics()
            .contains("sotto_bridge_audit_lines_dropped_total 2"));
    }

    #[test]
    fn dropping_the_log_writes_what_is_queued() {
        let dir = temp_dir("drain");
        let path = dir.join("audit.jsonl");
        let audit = Audit::start(&AuditConfig {
            enabled: true,
            path: Some(path.clone()),
            ..AuditConfig::default()
        })
        .unwrap();
        for _ in 0..500 {
            audit.record(Event::Logout {
                account: "a@example.org",
                resource: None,
                how: "shutdown",
            });
        }
        drop(audit);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 500);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn disabled_records_nothing() {
        let audit = Audit::start(&AuditConfig::default()).unwrap();
        assert!(!audit.enabled());
        audit.remember_resumable("x", "a@b/c");
        assert_eq!(audit.resumable("x"), None);
    }
}
