//! A throwaway Prosody (Debian's `/usr/bin/prosody`) in a directory of its own: config,
//! certificates (a private CA and a leaf signed by it), data, pidfile and log all live in
//! `ProsodyOptions::dir`. Nothing under `/etc` or `/var` is read or written: both `prosody` and
//! `prosodyctl` always get `--config`.
//!
//! Loopback only (`interfaces = {"127.0.0.1"}`), c2s with required STARTTLS, no s2s.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

pub use crate::ports::free_loopback_port;
use crate::ports::{accepts_tcp, loopback, process_alive, tail, terminate_child};

/// How long [`Prosody::start`] waits for the c2s port.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how to run Prosody.
#[derive(Debug, Clone)]
pub struct ProsodyOptions {
    /// Config, certificates, data, pidfile and log live here; created if missing, reused if
    /// present (accounts and certificates persist; the config is rewritten on every start).
    pub dir: PathBuf,
    /// The one VirtualHost, e.g. `"localhost"`.
    pub domain: String,
    /// Also enable mod_websocket (+ mod_http) on a free loopback port.
    pub websocket: bool,
    /// c2s without TLS (and PLAIN allowed there): for measuring a bridge whose upstream is
    /// `tls = "plaintext-loopback"`. Never for anything but loopback benchmarks.
    pub plaintext_c2s: bool,
}

/// How Prosody stores passwords, which decides the SASL mechanisms it can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// `internal_hashed` (the default and what deployments use): salted SCRAM-SHA-1 keys only,
    /// so Prosody 0.12 offers SCRAM-SHA-1 (and PLAIN over TLS).
    Hashed,
    /// `internal_plain`: the password itself, from which Prosody can run any SCRAM variant; it
    /// then also offers SCRAM-SHA-256. For testing that mechanism only.
    Plain,
}

impl Authentication {
    fn module(self) -> &'static str {
        match self {
            Self::Hashed => "internal_hashed",
            Self::Plain => "internal_plain",
        }
    }
}

/// A running Prosody. Dropping it sends SIGTERM, then SIGKILL after a few seconds, and reaps it.
#[derive(Debug)]
pub struct Prosody {
    child: Child,
    pid: u32,
    dir: PathBuf,
    config: PathBuf,
    domain: String,
    c2s: SocketAddr,
    http: Option<SocketAddr>,
    ca_file: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
}

const PROSODY: &str = "prosody";
const PROSODYCTL: &str = "prosodyctl";

impl Prosody {
    /// A Prosody for one test: a fresh directory under `target/` named after the test, the
    /// domain `localhost`, and each of `users` registered with the password `<user>-pass`.
    pub fn for_test(name: &str, users: &[&str]) -> Result<Prosody> {
        let prosody = Prosody::start(ProsodyOptions {
            dir: crate::test_dir(name)?,
            domain: "localhost".into(),
            websocket: false,
            plaintext_c2s: false,
        })?;
        for user in users {
            prosody.register(user, &format!("{user}-pass"))?;
        }
        Ok(prosody)
    }

    /// Writes a fresh config (fresh ports), creates the certificates if needed, starts Prosody in
    /// the foreground and waits (up to [`START_TIMEOUT`]) until its c2s port accepts TCP and its
    /// log says the listener is Prosody's own. Blocking; needs no async runtime.
    pub fn start(opts: ProsodyOptions) -> Result<Prosody> {
        Self::start_with_authentication(opts, Authentication::Hashed)
    }

    /// [`Prosody::start`] with a choice of password storage (which decides the SASL mechanisms
    /// Prosody 0.12 can offer).
    pub fn start_with_authentication(
        opts: ProsodyOptions,
        authentication: Authentication,
    ) -> Result<Prosody> {
        if opts.domain.is_empty()
            || !opts
                .domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            bail!(
                "ProsodyOptions::domain {:?}: use a plain ASCII host name",
                opts.domain
            );
        }
        let dir = absolute(&opts.dir)?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir)?;
        stop_stale(&dir)?;
        let certs = ensure_certificates(&dir.join("certs"), &opts.domain)?;

        // A port can be taken between probing and Prosody's bind: retry with fresh ports.
        let mut last_error = None;
        for _attempt in 0..3 {
            match Self::try_start(&opts, authentication, &dir, &data_dir, &certs) {
                Ok(p) => return Ok(p),
                Err(StartError::PortInUse(e)) => last_error = Some(e),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("Prosody did not start")))
    }

    fn try_start(
        opts: &ProsodyOptions,
        authentication: Authentication,
        dir: &Path,
        data_dir: &Path,
        certs: &Certs,
    ) -> Result<Prosody, StartError> {
        let c2s_port = free_loopback_port()?;
        let http_port = if opts.websocket {
            Some(free_loopback_port()?)
        } else {
            None
        };
        let log_file = dir.join("prosody.log");
        let config = dir.join("prosody.cfg.lua");
        let pidfile = dir.join("prosody.pid");
        let text = config_text(&ConfigParams {
            domain: &opts.domain,
            data_dir,
            pidfile: &pidfile,
            log_file: &log_file,
            c2s_port,
            http_port,
            certs,
            run_as_root: running_as_root(),
            authentication,
            plaintext_c2s: opts.plaintext_c2s,
        });
        std::fs::write(&config, text)
            .with_context(|| format!("cannot write {}", config.display()))?;
        // One log per start: keep the previous one as prosody.log.1.
        if log_file.exists() {
            let _ = std::fs::rename(&log_file, dir.join("prosody.log.1"));
        }
        let console = dir.join("prosody.console.log");
        let console_file = std::fs::File::create(&console)?;
        let child = Command::new(PROSODY)
            .arg("--config")
            .arg(&config)
            .arg("-F")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(console_file.try_clone()?)
            .stderr(console_file)
            // Own process group: a Ctrl-C in `cargo xtask demo` reaches the demo, which then
            // stops Prosody in order (Drop), instead of racing it.
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("cannot run {PROSODY} (is Debian's prosody package installed?)")
            })?;
        let pid = child.id();
        let mut prosody = Prosody {
            child,
            pid,
            dir: dir.to_path_buf(),
            config,
            domain: opts.domain.clone(),
            c2s: loopback(c2s_port),
            http: http_port.map(loopback),
            ca_file: certs.ca.clone(),
            data_dir: data_dir.to_path_buf(),
            log_file,
        };
        let started = Instant::now();
        let c2s_line = format!("Activated service 'c2s' on [127.0.0.1]:{c2s_port}");
        let http_line = http_port.map(|p| format!("Activated service 'http' on [127.0.0.1]:{p}"));
        loop {
            if let Ok(Some(status)) = prosody.child.try_wait() {
                return Err(StartError::Other(anyhow!(
                    "Prosody exited during startup ({status}).\n--- {} (tail) ---\n{}\n--- {} ---\n{}",
                    prosody.log_file.display(),
                    tail(&prosody.log_file, 40),
                    console.display(),
                    tail(&console, 40),
                )));
            }
            let log = std::fs::read_to_string(&prosody.log_file).unwrap_or_default();
            if log.contains("Failed to open server port") || log.contains("Address already in use")
            {
                // Drop kills it; retry on other ports.
                return Err(StartError::PortInUse(anyhow!(
                    "Prosody could not bind its ports:\n{}",
                    tail(&prosody.log_file, 20)
                )));
            }
            // Prosody 0.12.3 does not exit when it decides to shut down during startup (e.g.
            // "Another Prosody instance seems to be running", "Refusing to run as root"): its
            // shutdown crashes in startup.lua and the process idles. Fail fast instead.
            if log.contains("Shutting down:") || log.contains("Error initializing module") {
                return Err(StartError::Other(anyhow!(
                    "Prosody failed during startup.\n--- {} (tail) ---\n{}",
                    prosody.log_file.display(),
                    tail(&prosody.log_file, 40),
                )));
            }
            let ours =
                log.contains(&c2s_line) && http_line.as_ref().is_none_or(|l| log.contains(l));
            // mod_posix writes the pidfile after the listeners are up; waiting for it means
            // startup is complete and a later start in this dir can recognise this instance.
            let pid_written =
                std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim() == pid.to_string());
            if ours
                && pid_written
                && accepts_tcp(prosody.c2s)
                && prosody.http.is_none_or(accepts_tcp)
            {
                return Ok(prosody);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(StartError::Other(anyhow!(
                    "Prosody did not accept connections on {} within {:?}.\n--- {} (tail) ---\n{}\n--- {} ---\n{}",
                    prosody.c2s,
                    START_TIMEOUT,
                    prosody.log_file.display(),
                    tail(&prosody.log_file, 40),
                    console.display(),
                    tail(&console, 40),
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The VirtualHost.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `127.0.0.1:PORT` of the c2s listener (STARTTLS required).
    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    /// `ws://127.0.0.1:PORT/xmpp-websocket` when started with `websocket: true`.
    pub fn websocket_url(&self) -> Option<String> {
        self.http.map(|a| format!("ws://{a}/xmpp-websocket"))
    }

    /// PEM of the CA that signed Prosody's certificate (the bridge's `ca_file`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Prosody's `data_path` (internal storage: `<host escaped>/accounts/<user>.dat`, …).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The fixture directory (config, certs, data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config file written for this start.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// Prosody's log (info level; it does not log stanza contents at this level).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The Prosody process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Creates `user@domain` with `password`, or sets the password if the account exists.
    /// Runs `prosodyctl --config <ours> [--root] register user domain password`.
    pub fn register(&self, user: &str, password: &str) -> Result<()> {
        let mut cmd = Command::new(PROSODYCTL);
        cmd.arg("--config").arg(&self.config);
        if running_as_root() {
            cmd.arg("--root");
        }
        let output = cmd
            .arg("register")
            .arg(user)
            .arg(&self.domain)
            .arg(password)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {PROSODYCTL}"))?;
        if !output.status.success() {
            bail!(
                "prosodyctl register {user} {} failed ({}):\n{}{}",
                self.domain,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if !self.user_exists(user) {
            bail!(
                "prosodyctl register {user} {} succeeded but {} does not exist:\n{}{}",
                self.domain,
                self.account_file(user).display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Whether the account's file exists in internal storage.
    pub fn user_exists(&self, user: &str) -> bool {
        self.account_file(user).is_file()
    }

    /// `data_dir/<escaped domain>/accounts/<escaped user>.dat`. Prosody's datamanager escapes
    /// every non-alphanumeric byte as `%xx` (lowercase hex), so `upload.localhost` is stored as
    /// `upload%2elocalhost`; user names are stored nodeprepped (lowercase).
    pub fn account_file(&self, user: &str) -> PathBuf {
        self.data_dir
            .join(prosody_escape(&self.domain.to_ascii_lowercase()))
            .join("accounts")
            .join(format!("{}.dat", prosody_escape(&user.to_lowercase())))
    }

    /// Whether the Prosody process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        terminate_child(&mut self.child, Duration::from_secs(5), false);
    }
}

enum StartError {
    PortInUse(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Other(e.into())
    }
}

/// Prosody's datamanager path encoding: `%W` (non-alphanumeric) bytes become `%xx`.
pub fn prosody_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

/// Effective uid 0? Read from `/proc/self/status` (no libc/unsafe in this crate).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A Prosody left over from a killed test process that used this same directory: if the
/// pidfile names a live process whose command line mentions our config, stop it.
/// A Prosody whose parent is still alive (not reparented to PID 1) belongs to a live process
/// (another test, a running demo): that is an error, not a leftover.
fn stop_stale(dir: &Path) -> Result<()> {
    let pidfile = dir.join("prosody.pid");
    let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    if !process_alive(pid) {
        return Ok(());
    }
    let config = dir.join("prosody.cfg.lua");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    if cmdline.contains(&*config.to_string_lossy()) {
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
            })
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            if ppid != 1 && process_alive(ppid) {
                bail!(
                    "{} is in use by a running Prosody (pid {pid}, started by pid {ppid}); use another directory",
                    dir.display()
                );
            }
        }
        crate::ports::send_signal(pid, "TERM", false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if process_alive(pid) {
            crate::ports::send_signal(pid, "KILL", false);
        }
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// Certificate files for one domain.
#[derive(Debug, Clone)]
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Creates (once per directory) a private CA and a leaf for `domain` signed by it, with the
/// `openssl` CLI. Regenerates when a file is missing or the leaf expires within 30 days.
/// The leaf has `subjectAltName=DNS:<domain>`, `CA:FALSE` and `serverAuth`, as webpki requires.
fn ensure_certificates(dir: &Path, domain: &str) -> Result<Certs> {
    std::fs::create_dir_all(dir)?;
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{domain}.crt")),
        key: dir.join(format!("{domain}.key")),
    };
    let ca_key = dir.join("ca.key");
    let ca_ok = certs.ca.is_file() && ca_key.is_file() && valid_for_30_days(&certs.ca);
    if !ca_ok {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ca.key",
            ],
        )?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-sha256",
                "-days",
                "3650",
                "-subj",
                "/O=Sotto tests/CN=Sotto test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-addext",
                "subjectKeyIdentifier=hash",
                "-out",
                "ca.pem",
            ],
        )?;
    }
    let leaf_ok =
        ca_ok && certs.cert.is_file() && certs.key.is_file() && valid_for_30_days(&certs.cert);
    if !leaf_ok {
        let key_name = format!("{domain}.key");
        let csr_name = format!("{domain}.csr");
        let crt_name = format!("{domain}.crt");
        let ext_name = format!("{domain}.ext");
        std::fs::write(
            dir.join(&ext_name),
            format!(
                "subjectAltName=DNS:{domain}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
                 subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            ),
        )?;
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key_name,
            ],
        )?;
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key_name,
                "-subj",
                &format!("/CN={domain}"),
                "-out",
                &csr_name,
            ],
        )?;
        let serial = format!(
            "0x{:x}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1)
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr_name,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "365",
                "-sha256",
                "-extfile",
                &ext_name,
                "-out",
                &crt_name,
            ],
        )?;
        let _ = std::fs::remove_file(dir.join(&csr_name));
    }
    restrict(&ca_key);
    restrict(&certs.key);
    Ok(certs)
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

fn valid_for_30_days(cert: &Path) -> bool {
    Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "2592000", "-in"])
        .arg(cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run openssl (is Debian's openssl package installed?)")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

struct ConfigParams<'a> {
    domain: &'a str,
    data_dir: &'a Path,
    pidfile: &'a Path,
    log_file: &'a Path,
    c2s_port: u16,
    http_port: Option<u16>,
    certs: &'a Certs,
    run_as_root: bool,
    authentication: Authentication,
    plaintext_c2s: bool,
}

/// A Lua string literal.
fn lua(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn lua_path(p: &Path) -> String {
    lua(&p.to_string_lossy())
}

fn config_text(p: &ConfigParams<'_>) -> String {
    let mut modules = vec![
        "roster",
        "saslauth",
        "tls",
        "disco",
        "carbons",
        "pep",
        "mam",
        "smacks",
        "blocklist",
        "offline",
        "ping",
        "private",
        "register",
        "csi_simple",
        // `prosodyctl shell` (account listing, closing sessions) talks to the running server
        // over mod_admin_socket's unix socket in the data directory.
        "admin_shell",
        "posix",
    ];
    if p.http_port.is_some() {
        modules.extend(["http", "websocket"]);
    }
    let modules = modules
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join("; ");
    let mut t = String::new();
    let _ = writeln!(
        t,
        "-- Written by sotto-tests (tests/src/prosody.rs) on every start; edits are lost."
    );
    let _ = writeln!(t, "daemonize = false");
    let _ = writeln!(t, "pidfile = {}", lua_path(p.pidfile));
    let _ = writeln!(t, "data_path = {}", lua_path(p.data_dir));
    if p.run_as_root {
        let _ = writeln!(t, "run_as_root = true");
    }
    let _ = writeln!(t, "admins = {{ }}");
    let _ = writeln!(t, "plugin_paths = {{ }}");
    let _ = writeln!(t, "log = {{ info = {}; }}", lua_path(p.log_file));
    let _ = writeln!(t, "interfaces = {{ \"127.0.0.1\" }}");
    let _ = writeln!(t, "local_interfaces = {{ \"127.0.0.1\" }}");
    let _ = writeln!(t, "c2s_ports = {{ {} }}", p.c2s_port);
    let _ = writeln!(t, "c2s_direct_tls_ports = {{ }}");
    let _ = writeln!(t, "legacy_ssl_ports = {{ }}");
    let _ = writeln!(t, "s2s_ports = {{ }}");
    let _ = writeln!(t, "s2s_direct_tls_ports = {{ }}");
    let _ = writeln!(t, "component_ports = {{ }}");
    let _ = writeln!(t, "https_ports = {{ }}");
    match p.http_port {
        Some(port) => {
            let _ = writeln!(t, "http_ports = {{ {port} }}");
            let _ = writeln!(t, "http_interfaces = {{ \"127.0.0.1\" }}");
            let _ = writeln!(t, "consider_websocket_secure = true");
            // (cross_domain_websocket is deprecated and ignored in 0.12: CORS is on by default.)
        }
        None => {
            let _ = writeln!(t, "http_ports = {{ }}");
        }
    }
    let _ = writeln!(t, "c2s_require_encryption = {}", !p.plaintext_c2s);
    let _ = writeln!(t, "allow_unencrypted_plain_auth = {}", p.plaintext_c2s);
    let _ = writeln!(t, "allow_registration = false");
    let _ = writeln!(t, "authentication = {}", lua(p.authentication.module()));
    let _ = writeln!(t, "storage = \"internal\"");
    let _ = writeln!(
        t,
        "certificates = {}",
        lua_path(p.certs.ca.parent().unwrap_or(Path::new(".")))
    );
    let _ = writeln!(t, "modules_enabled = {{ {modules} }}");
    let _ = writeln!(t, "modules_disabled = {{ \"s2s\" }}");
    let _ = writeln!(t);
    let _ = writeln!(t, "VirtualHost {}", lua(p.domain));
    let _ = writeln!(
        t,
        "    ssl = {{ key = {}; certificate = {}; }}",
        lua_path(&p.certs.key),
        lua_path(&p.certs.cert)
    );
    t
}

/// Sends a c2s stream header to `addr` and returns what the server answers (stream header and
/// `<stream:features>`), reading until `</stream:features>` or `timeout`. For self-tests and
/// diagnostics.
pub fn c2s_stream_features(addr: SocketAddr, domain: &str, timeout: Duration) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    write!(
        stream,
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>"
    )?;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&buf).contains("</stream:features>") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = stream.write_all(b"</stream:stream>");
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
