//! Small process/port/path helpers shared by the fixtures: free loopback ports, the workspace's
//! `target/` directory, per-test scratch directories, and `/proc`-based process bookkeeping.
//!
//! Everything here is loopback-only and touches nothing outside the workspace's `target/`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
///
/// There is an unavoidable race between releasing it and the real server binding it; the
/// fixtures detect a failed bind and retry with a fresh port.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// The workspace root: the nearest ancestor of this crate's manifest directory holding
/// `Cargo.lock`.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or_else(|| manifest.parent().unwrap_or(manifest))
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set (made absolute), else
/// `<workspace root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir().map(|c| c.join(&dir)).unwrap_or(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// `NAME-PID-SEQ`: unique within this machine for as long as this process lives. `NAME` is
/// sanitised to `[A-Za-z0-9_-]`.
pub fn unique_name(name: &str) -> String {
    format!(
        "{}-{}-{}",
        sanitize(name),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Keeps `[A-Za-z0-9_-]`, maps everything else to `_` (so a name is a safe path component).
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

/// A fresh, empty directory `target/<kind>/NAME-PID-SEQ`. Before creating it, removes leftovers
/// `target/<kind>/*-PID-*` whose PID no longer runs and that are over an hour old, so the directory
/// does not grow forever while a live process's directories are never touched.
pub fn fresh_dir(kind: &str, name: &str) -> Result<PathBuf> {
    let base = target_dir().join(kind);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    remove_stale(&base);
    let dir = base.join(unique_name(name));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Leftovers of dead test processes younger than this are kept (for post-mortems).
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Removes `base/*-PID-SEQ[.*]` entries whose PID is not a running process and that were last
/// modified more than [`STALE_AFTER`] ago.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let stem = name.split('.').next().unwrap_or(name);
        let mut parts = stem.rsplitn(3, '-');
        let (Some(seq), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if seq.parse::<u64>().is_err() {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        // Keep recent ones for post-mortems (a failed test's Prosody log, browser profile).
        let recent = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < STALE_AFTER);
        if recent {
            continue;
        }
        // Never delete a directory some process (e.g. an orphaned browser) still uses.
        if !pids_with_cmdline_containing(&path.to_string_lossy()).is_empty() {
            continue;
        }
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A fresh scratch directory for one test: `target/test-data/NAME-PID-SEQ` (see [`fresh_dir`]).
pub fn test_dir(name: &str) -> Result<PathBuf> {
    fresh_dir("test-data", name)
}

/// Whether `/proc/PID` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ..." — comm may contain spaces/parens, so split after the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// PIDs (other than this process) whose command line contains `needle`.
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `signal` (e.g. "TERM", "KILL") to a PID, or to a process group when `group` is set,
/// via `/bin/kill` (this crate forbids `unsafe`, so no libc). Errors are ignored: the target may
/// already be gone.
pub fn send_signal(pid: u32, signal: &str, group: bool) {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops a child: SIGTERM (to its process group if `group`), waits up to `grace`, then SIGKILL;
/// always reaps it. Returns whether it exited within the grace period.
pub fn terminate_child(child: &mut Child, grace: Duration, group: bool) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        if group {
            send_signal(child.id(), "KILL", true);
        }
        return true;
    }
    send_signal(child.id(), "TERM", group);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            if group {
                // Leftovers in the group (helpers) go too.
                send_signal(child.id(), "KILL", true);
            }
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if group {
        send_signal(child.id(), "KILL", true);
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// SIGKILLs every process whose command line contains `needle` (a unique path such as a
/// browser profile directory) and waits up to `timeout` for them to vanish. Returns the PIDs
/// still alive afterwards (empty on success).
pub fn kill_by_cmdline(needle: &str, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = pids_with_cmdline_containing(needle);
        if pids.is_empty() || Instant::now() >= deadline {
            return pids;
        }
        for pid in &pids {
            send_signal(*pid, "KILL", false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections on `addr` right now.
pub fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The last `max_lines` lines of a text file ("" if unreadable).
pub fn tail(path: &Path, max_lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}
