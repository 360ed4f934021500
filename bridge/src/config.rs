//! The bridge's configuration file (TOML) and its validation.
//!
//! Every upstream the bridge may ever connect to is named here; nothing a client sends can add
//! to that list. A bad file is refused at start with a message naming the key and the problem.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Directory holding the built client (`cargo xtask dist` writes `target/dist`).
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    /// The URL users reach the bridge at; used for XEP-0156 discovery and the origin check.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Origins allowed to open WebSockets. Empty: the bridge's own origin only.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long a graceful shutdown may take before remaining sessions are dropped.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// The XMPP servers this bridge relays to, selected by the `to` of the client's `<open/>`.
    #[serde(default)]
    pub upstream: Vec<Upstream>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Organisation policy enforced on every client→server stanza after login.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The audit log of use (logins, logouts, resumptions, policy refusals; never content).
    #[serde(default)]
    pub audit: AuditConfig,
    /// Settings announced to the web app at `/config.json`.
    #[serde(default)]
    pub client: ClientConfig,
}

/// `[policy]`: what members of the organisation may do. The bridge sees routing, not content,
/// so every rule is about addresses and the presence of elements, never about text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Domains messages, presence subscriptions and IQs may be addressed to (exact match,
    /// case-insensitive). Empty: no restriction.
    pub allowed_domains: Vec<String>,
    /// Refuse messages that carry a `<body>` without an OMEMO `<encrypted/>` element.
    pub require_e2e: bool,
    /// Addresses exempt from `require_e2e`: a bare JID (`bot@example.org`) or a domain
    /// (`example.org`, which covers only that domain itself and its accounts).
    pub exempt_addresses: Vec<String>,
    /// The only XEP-0363 upload service clients may request slots from (a domain). Unset: any.
    pub upload_service: Option<String>,
    /// The largest file a slot may be requested for, in bytes. Unset: no limit at the bridge.
    pub max_upload_bytes: Option<u64>,
    /// Per-group rules; an account belongs to at most one group.
    pub group: Vec<GroupConfig>,
}

/// `[[policy.group]]`: rules for a named set of accounts that replace the global ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// A name for logs and the audit (not a JID).
    pub name: String,
    /// Bare JIDs of the members.
    pub members: Vec<String>,
    /// Replaces `policy.allowed_domains` for members (empty: no restriction). Unset: the global
    /// list applies.
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
    /// Replaces `policy.require_e2e` for members. Unset: the global setting applies.
    #[serde(default)]
    pub require_e2e: Option<bool>,
}

/// `[audit]`: an append-only JSON-lines record of use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Off by default.
    pub enabled: bool,
    /// The file to append to (its directory must exist); required when enabled.
    pub path: Option<PathBuf>,
    /// Record the client's IP address with logins and resumptions.
    pub log_ip: bool,
    /// Rotate when the file would grow beyond this many bytes.
    pub rotate_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`); older ones are deleted.
    pub keep_files: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: None,
            log_ip: false,
            rotate_bytes: 64 * 1024 * 1024,
            keep_files: 10,
        }
    }
}

/// How the web app starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientMode {
    /// The user's own device: keys and history may be kept.
    #[default]
    Personal,
    /// A shared computer: nothing is kept, idle sessions end.
    Kiosk,
}

impl ClientMode {
    /// The value as written in the configuration and in `/config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMode::Personal => "personal",
            ClientMode::Kiosk => "kiosk",
        }
    }
}

/// `[client]`: settings the web app reads from `/config.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// The mode the login screen preselects.
    pub default_mode: ClientMode,
    /// Kiosk sessions end after this long without user activity.
    pub kiosk_idle_secs: u64,
    /// Kiosk mode only; the user cannot choose personal mode.
    pub force_kiosk: bool,
    /// Users may sign in to XMPP services this bridge does not relay: the app finds their
    /// WebSocket endpoint through XEP-0156 and connects to it directly (never through this
    /// bridge, which still relays only to its `[[upstream]]`s). Off by default: the page's
    /// Content-Security-Policy then allows connections to this origin only.
    pub other_servers: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            default_mode: ClientMode::Personal,
            kiosk_idle_secs: 300,
            force_kiosk: false,
            other_servers: false,
        }
    }
}

/// One XMPP service the bridge relays to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The XMPP domain clients name in `<open to=…/>`.
    pub domain: String,
    /// Host name or IP address of the XMPP server's client-to-server listener.
    pub host: String,
    /// Its port (5222 for STARTTLS, usually 5223 for direct TLS).
    #[serde(default = "default_c2s_port")]
    pub port: u16,
    /// How the bridge secures the upstream connection.
    #[serde(default)]
    pub tls: TlsMode,
    /// An extra PEM trust anchor (for a private CA), in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name to verify in the server certificate; defaults to `domain`.
    #[serde(default)]
    pub tls_name: Option<String>,
}

/// How the bridge secures its connection to an upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// RFC 6120 STARTTLS on the ordinary c2s port.
    #[default]
    Starttls,
    /// TLS from the first byte (XEP-0368 style).
    Direct,
    /// No TLS at all: allowed only when the upstream host is a loopback address.
    PlaintextLoopback,
}

/// Resource limits; each protects the bridge or the upstream from one kind of abuse.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single element (stanza) in either direction.
    pub max_stanza_bytes: usize,
    /// Open WebSocket sessions in total.
    pub max_connections: usize,
    /// Open WebSocket sessions per client IP address.
    pub max_connections_per_ip: usize,
    /// Sustained client→server stanzas per second per session (token bucket).
    pub stanzas_per_second: u32,
    /// Time allowed between the WebSocket upgrade and the client's `<open/>`.
    pub handshake_timeout_secs: u64,
    /// A session with no traffic in either direction for this long is closed. WebSocket pings
    /// and pongs are not traffic for this purpose.
    pub idle_timeout_secs: u64,
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// The bridge sends the client a WebSocket ping this often (RFC 7395 §3.8: no whitespace
    /// keepalives on WebSocket). A client that answers nothing, neither a pong nor any other
    /// message, for two intervals after a ping is treated as gone: its upstream connection is
    /// dropped without `</stream:stream>`, so its XEP-0198 session stays resumable.
    pub ping_interval_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 262_144,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            stanzas_per_second: 100,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 600,
            max_depth: 64,
            ping_interval_secs: 30,
        }
    }
}

fn default_c2s_port() -> u16 {
    5222
}

fn default_shutdown_grace_secs() -> u64 {
    10
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A key has a value the bridge cannot use.
    #[error("`{key}`: {problem}")]
    Invalid {
        /// The offending key, e.g. `upstream[0].tls`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.upstream.is_empty() {
            return Err(invalid(
                "upstream",
                "at least one [[upstream]] is required: the bridge relays only to servers named here",
            ));
        }
        let mut domains = HashSet::new();
        for (i, upstream) in self.upstream.iter().enumerate() {
            let key = |k: &str| format!("upstream[{i}].{k}");
            if !is_valid_domain(&upstream.domain) {
                return Err(invalid(key("domain"), "must be a DNS domain name"));
            }
            if !domains.insert(upstream.domain.to_ascii_lowercase()) {
                return Err(invalid(key("domain"), "is listed twice"));
            }
            if upstream.host.trim().is_empty() {
                return Err(invalid(key("host"), "must not be empty"));
            }
            if upstream.port == 0 {
                return Err(invalid(key("port"), "must not be 0"));
            }
            if upstream.tls == TlsMode::PlaintextLoopback && !is_loopback_host(&upstream.host) {
                return Err(invalid(
                    key("tls"),
                    "\"plaintext-loopback\" is allowed only when host is a loopback address (127.0.0.1, ::1 or localhost)",
                ));
            }
            if let Some(ca) = &upstream.ca_file {
                if !ca.is_file() {
                    return Err(invalid(
                        key("ca_file"),
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
            }
        }
        if let Some(dir) = &self.static_dir {
            if !dir.is_dir() {
                return Err(invalid(
                    "static_dir",
                    format!(
                        "{} is not a directory (build the client with `cargo xtask dist`)",
                        dir.display()
                    ),
                ));
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("public_url", "must start with http:// or https://"));
            }
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(invalid(
                    format!("allowed_origins[{i}]"),
                    "must be an origin like https://chat.example.org (scheme and host, no path)",
                ));
            }
        }
        let limits = &self.limits;
        let positive = [
            ("limits.max_stanza_bytes", limits.max_stanza_bytes as u64),
            ("limits.max_connections", limits.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                limits.max_connections_per_ip as u64,
            ),
            (
                "limits.stanzas_per_second",
                u64::from(limits.stanzas_per_second),
            ),
            (
                "limits.handshake_timeout_secs",
                limits.handshake_timeout_secs,
            ),
            ("limits.idle_timeout_secs", limits.idle_timeout_secs),
            ("limits.max_depth", limits.max_depth as u64),
            ("limits.ping_interval_secs", limits.ping_interval_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if limits.max_stanza_bytes > 16 * 1024 * 1024 {
            return Err(invalid("limits.max_stanza_bytes", "must be at most 16 MiB"));
        }
        self.validate_policy()?;
        self.validate_audit()?;
        if self.client.kiosk_idle_secs == 0 {
            return Err(invalid("client.kiosk_idle_secs", "must be greater than 0"));
        }
        Ok(())
    }

    fn validate_policy(&self) -> Result<(), ConfigError> {
        let policy = &self.policy;
        let domains = |key: &str, list: &[String]| {
            for (i, d) in list.iter().enumerate() {
                if !is_valid_domain(d) {
                    return Err(invalid(
                        format!("{key}[{i}]"),
                        "must be a domain name like example.org (no user part, no wildcard)",
                    ));
                }
            }
            Ok(())
        };
        domains("policy.allowed_domains", &policy.allowed_domains)?;
        for (i, address) in policy.exempt_addresses.iter().enumerate() {
            if !is_valid_bare_jid(address) && !is_valid_domain(address) {
                return Err(invalid(
                    format!("policy.exempt_addresses[{i}]"),
                    "must be a bare JID (bot@example.org) or a domain (example.org)",
                ));
            }
        }
        if let Some(service) = &policy.upload_service {
            if !is_valid_domain(service) {
                return Err(invalid(
                    "policy.upload_service",
                    "must be the upload service's domain, like upload.example.org",
                ));
            }
        }
        if policy.max_upload_bytes == Some(0) {
            return Err(invalid("policy.max_upload_bytes", "must be greater than 0"));
        }
        let mut names = HashSet::new();
        let mut members = HashSet::new();
        for (i, group) in policy.group.iter().enumerate() {
            let key = |k: &str| format!("policy.group[{i}].{k}");
            if group.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if !names.insert(group.name.as_str()) {
                return Err(invalid(key("name"), "is used by two groups"));
            }
            for (j, member) in group.members.iter().enumerate() {
                if !is_valid_bare_jid(member) {
                    return Err(invalid(
                        format!("policy.group[{i}].members[{j}]"),
                        "must be a bare JID like alice@example.org",
                    ));
                }
                if !members.insert(member.to_lowercase()) {
                    return Err(invalid(
                        format!("policy.group[{i}].members[{j}]"),
                        "is a member of two groups (an account belongs to at most one)",
                    ));
                }
            }
            if let Some(list) = &group.allowed_domains {
                domains(&key("allowed_domains"), list)?;
            }
        }
        Ok(())
    }

    fn validate_audit(&self) -> Result<(), ConfigError> {
        let audit = &self.audit;
        if audit.rotate_bytes < 4096 {
            return Err(invalid("audit.rotate_bytes", "must be at least 4096"));
        }
        if !audit.enabled {
            return Ok(());
        }
        let Some(path) = &audit.path else {
            return Err(invalid(
                "audit.path",
                "is required when audit.enabled = true",
            ));
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(invalid(
                "audit.path",
                format!("{}: its directory does not exist", path.display()),
            ));
        }
        if path.is_dir() {
            return Err(invalid("audit.path", "is a directory; name a file"));
        }
        Ok(())
    }

    /// Settings that are valid but probably not meant (printed by `check-config` and at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let lists = std::iter::once((
            "policy.allowed_domains".to_owned(),
            &self.policy.allowed_domains,
        ))
        .chain(self.policy.group.iter().enumerate().filter_map(|(i, g)| {
            g.allowed_domains
                .as_ref()
                .map(|l| (format!("policy.group[{i}].allowed_domains"), l))
        }));
        for (key, list) in lists {
            if list.is_empty() {
                continue;
            }
            for upstream in &self.upstream {
                if !list
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(&upstream.domain))
                {
                    out.push(format!(
                        "`{key}` does not list {}, the domain of an [[upstream]]: its accounts cannot message each other",
                        upstream.domain
                    ));
                }
            }
        }
        if self.audit.path.is_some() && !self.audit.enabled {
            out.push(
                "`audit.path` is set but `audit.enabled` is false: nothing is recorded".into(),
            );
        }
        out
    }

    /// The configured upstream for an XMPP domain, compared case-insensitively.
    pub fn upstream_for(&self, domain: &str) -> Option<&Upstream> {
        self.upstream
            .iter()
            .find(|u| u.domain.eq_ignore_ascii_case(domain))
    }

    /// The public base URL, without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The WebSocket URL clients use, as announced by XEP-0156 discovery.
    pub fn websocket_url(&self) -> String {
        let base = self.public_base();
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base
        };
        format!("{ws}/xmpp-websocket")
    }

    /// The handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.handshake_timeout_secs)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout_secs)
    }
}

/// Whether `host` names the loopback interface (checked again on the resolved addresses).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A bare JID `local@domain` with a DNS-style domain and no resource.
pub fn is_valid_bare_jid(jid: &str) -> bool {
    match jid.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 1023
                && !local.contains(['/', '"', '&', '\'', ':', '<', '>', '@'])
                && !local.chars().any(char::is_whitespace)
                && is_valid_domain(domain)
        }
        None => false,
    }
}

/// A DNS-style domain: labels of letters, digits and hyphens; no IP literals.
pub fn is_valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.parse::<IpAddr>().is_err()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:8080"
[[upstream]]
domain = "localhost"
host = "127.0.0.1"
port = 5222
"#;

    #[test]
    fn minimal_config_uses_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.limits.max_stanza_bytes, 262_144);
        assert_eq!(config.limits.ping_interval_secs, 30);
        assert_eq!(config.upstream[0].tls, TlsMode::Starttls);
        assert_eq!(config.websocket_url(), "ws://127.0.0.1:8080/xmpp-websocket");
        assert!(config.upstream_for("LOCALHOST").is_some());
        assert!(config.upstream_for("example.org").is_none());
    }

    #[test]
    fn full_config_from_the_documentation_parses() {
        let text = r#"
listen = "127.0.0.1:8080"
public_url = "https://chat.example.org/"
allowed_origins = ["https://app.example.org"]
[[upstream]]
domain = "example.org"
host = "xmpp.example.org"
port = 5223
tls = "direct"
tls_name = "xmpp.example.org"
[limits]
max_stanza_bytes = 262144
max_connections = 10000
max_connections_per_ip = 100
stanzas_per_second = 100
handshake_timeout_secs = 10
idle_timeout_secs = 600
ping_interval_secs = 20
"#;
        let config = Config::parse(text).unwrap();
        assert_eq!(config.limits.ping_interval_secs, 20);
        assert_eq!(
            config.websocket_url(),
            "wss://chat.example.org/xmpp-websocket"
        );
        assert_eq!(config.upstream[0].tls, TlsMode::Direct);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error_of("listen = \"127.0.0.1:8080\"").contains("upstream"));
        let plaintext_remote = format!("{MINIMAL}tls = \"plaintext-loopback\"\n")
            .replace("127.0.0.1\"\nport", "192.0.2.1\"\nport");
        assert!(error_of(&plaintext_remote).contains("upstream[0].tls"));
        let unknown = format!("{MINIMAL}bogus = 1\n");
        assert!(
            error_of(&unknown).contains("bogus"),
            "{}",
            error_of(&unknown)
        );
        let zero = format!("{MINIMAL}[limits]\nstanzas_per_second = 0\n");
        assert!(error_of(&zero).contains("limits.stanzas_per_second"));
        let no_ping = format!("{MINIMAL}[limits]\nping_interval_secs = 0\n");
        assert!(error_of(&no_ping).contains("limits.ping_interval_secs"));
        let ip_domain = MINIMAL.replace("domain = \"localhost\"", "domain = \"10.0.0.1\"");
        assert!(error_of(&ip_domain).contains("upstream[0].domain"));
        let bad_tls = format!("{MINIMAL}tls = \"none\"\n");
        assert!(error_of(&bad_tls).contains("tls"), "{}", error_of(&bad_tls));
        let missing_ca = format!("{MINIMAL}ca_file = \"/nonexistent/ca.pem\"\n");
        assert!(error_of(&missing_ca).contains("upstream[0].ca_file"));
    }

    #[test]
    fn plaintext_allowed_on_loopback_only() {
        let ok = format!("{MINIMAL}tls = \"plaintext-loopback\"\n");
        assert!(Config::parse(&ok).is_ok());
        assert!(is_loopback_host("::1"));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("example.org"));
    }

    #[test]
    fn policy_audit_and_client_sections() {
        let text = format!(
            "{MINIMAL}[policy]\nallowed_domains = [\"example.org\", \"conference.example.org\"]\nrequire_e2e = true\n\
exempt_addresses = [\"bot@example.org\", \"example.org\"]\nupload_service = \"upload.example.org\"\nmax_upload_bytes = 1048576\n\
[[policy.group]]\nname = \"kiosk\"\nmembers = [\"kiosk1@example.org\"]\nallowed_domains = [\"example.org\"]\n\
[audit]\nenabled = false\npath = \"/var/log/sotto/audit.jsonl\"\n[client]\ndefault_mode = \"kiosk\"\nkiosk_idle_secs = 120\nforce_kiosk = true\n"
        );
        let config = Config::parse(&text).unwrap();
        assert!(config.policy.require_e2e);
        assert_eq!(config.policy.group[0].members, ["kiosk1@example.org"]);
        assert_eq!(config.client.default_mode, ClientMode::Kiosk);
        assert_eq!(config.audit.keep_files, 10);
        let defaults = Config::parse(MINIMAL).unwrap();
        assert!(defaults.policy.allowed_domains.is_empty());
        assert!(!defaults.audit.enabled);
        assert_eq!(defaults.client.kiosk_idle_secs, 300);

        let bad = |extra: &str| error_of(&format!("{MINIMAL}{extra}"));
        assert!(bad("[policy]\nallowed_domains = [\"*.example.org\"]\n")
            .contains("policy.allowed_domains[0]"));
        assert!(
            bad("[policy]\nexempt_addresses = [\"bot@\"]\n").contains("policy.exempt_addresses[0]")
        );
        assert!(bad("[policy]\nmax_upload_bytes = 0\n").contains("policy.max_upload_bytes"));
        assert!(bad("[policy]\nbogus = 1\n").contains("bogus"));
        assert!(bad("[[policy.group]]\nname = \"a\"\nmembers = [\"x@example.org\"]\n[[policy.group]]\nname = \"b\"\nmembers = [\"X@example.org\"]\n")
            .contains("policy.group[1].members[0]"));
        assert!(bad("[audit]\nenabled = true\n").contains("audit.path"));
        assert!(
            bad("[audit]\nenabled = true\npath = \"/nonexistent/dir/audit.jsonl\"\n")
                .contains("audit.path")
        );
        assert!(bad("[client]\ndefault_mode = \"public\"\n").contains("default_mode"));
        assert!(bad("[client]\nkiosk_idle_secs = 0\n").contains("client.kiosk_idle_secs"));
    }

    #[test]
    fn warnings_for_likely_mistakes() {
        assert!(Config::parse(MINIMAL).unwrap().warnings().is_empty());
        let own_domain_missing =
            format!("{MINIMAL}[policy]\nallowed_domains = [\"example.org\"]\n");
        let warnings = Config::parse(&own_domain_missing).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("policy.allowed_domains"));
        let fine = format!("{MINIMAL}[policy]\nallowed_domains = [\"LOCALHOST\"]\n");
        assert!(Config::parse(&fine).unwrap().warnings().is_empty());
        let idle_audit = format!("{MINIMAL}[audit]\npath = \"audit.jsonl\"\n");
        assert!(Config::parse(&idle_audit).unwrap().warnings()[0].contains("audit.enabled"));
    }

    #[test]
    fn bare_jids() {
        assert!(is_valid_bare_jid("alice@example.org"));
        assert!(!is_valid_bare_jid("alice@example.org/res"));
        assert!(!is_valid_bare_jid("example.org"));
        assert!(!is_valid_bare_jid("@example.org"));
    }

    #[test]
    fn domains_are_dns_names() {
        assert!(is_valid_domain("example.org"));
        assert!(is_valid_domain("localhost"));
        assert!(!is_valid_domain("127.0.0.1"));
        assert!(!is_valid_domain("a..b"));
        assert!(!is_valid_domain("a b"));
        assert!(!is_valid_domain("-a.org"));
    }
}
