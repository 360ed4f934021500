//! Prometheus metrics. Counters only: no JID, IP address or content ever becomes a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::policy::Rule;

/// Why a WebSocket session was refused or ended early; each is one label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The total connection cap was reached.
    MaxConnections,
    /// The per-IP connection cap was reached.
    MaxConnectionsPerIp,
    /// The `Origin` header is not allowed.
    Origin,
    /// The client did not ask for the `xmpp` subprotocol.
    Subprotocol,
    /// No `<open/>` arrived in time.
    HandshakeTimeout,
    /// The `<open/>` named a domain that is not configured.
    HostUnknown,
    /// The upstream server could not be reached or negotiated.
    UpstreamFailed,
    /// The client sent malformed or restricted XML.
    BadXml,
    /// A stanza exceeded the size limit.
    TooLarge,
    /// The stanza rate limit was exceeded.
    RateLimited,
    /// The session was idle too long.
    Idle,
    /// The client answered no WebSocket ping for two ping intervals.
    PingTimeout,
}

impl Refusal {
    const ALL: [Refusal; 12] = [
        Refusal::MaxConnections,
        Refusal::MaxConnectionsPerIp,
        Refusal::Origin,
        Refusal::Subprotocol,
        Refusal::HandshakeTimeout,
        Refusal::HostUnknown,
        Refusal::UpstreamFailed,
        Refusal::BadXml,
        Refusal::TooLarge,
        Refusal::RateLimited,
        Refusal::Idle,
        Refusal::PingTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::Origin => "origin",
            Refusal::Subprotocol => "subprotocol",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::HostUnknown => "host_unknown",
            Refusal::UpstreamFailed => "upstream_failed",
            Refusal::BadXml => "bad_xml",
            Refusal::TooLarge => "too_large",
            Refusal::RateLimited => "rate_limited",
            Refusal::Idle => "idle",
            Refusal::PingTimeout => "ping_timeout",
        }
    }
}

/// Upper bounds (seconds) of the upstream connect latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// All bridge metrics, updated with relaxed atomics (they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    refused: [AtomicU64; 12],
    stanzas_to_upstream: AtomicU64,
    stanzas_to_client: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    connect_buckets: [AtomicU64; 10],
    connect_count: AtomicU64,
    connect_sum_micros: AtomicU64,
    policy_refused: [AtomicU64; 4],
}

impl Metrics {
    /// A WebSocket session started.
    pub fn session_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// A WebSocket session ended.
    pub fn session_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A session was refused or ended for `reason`.
    pub fn refused(&self, reason: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == reason) {
            if let Some(counter) = self.refused.get(i) {
                counter.fetch_add(1, Relaxed);
            }
        }
    }

    /// A stanza was refused by the policy rule `rule`.
    pub fn policy_refused(&self, rule: Rule) {
        if let Some(i) = Rule::ALL.iter().position(|r| *r == rule) {
            if let Some(counter) = self.policy_refused.get(i) {
                counter.fetch_add(1, Relaxed);
            }
        }
    }

    /// One element of `bytes` bytes went from the client to the upstream.
    pub fn to_upstream(&self, bytes: usize) {
        self.stanzas_to_upstream.fetch_add(1, Relaxed);
        self.bytes_to_upstream.fetch_add(bytes as u64, Relaxed);
    }

    /// One element of `bytes` bytes went from the upstream to the client.
    pub fn to_client(&self, bytes: usize) {
        self.stanzas_to_client.fetch_add(1, Relaxed);
        self.bytes_to_client.fetch_add(bytes as u64, Relaxed);
    }

    /// An upstream connection (TCP + TLS + stream negotiation) took `elapsed`.
    pub fn upstream_connected(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.connect_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.connect_count.fetch_add(1, Relaxed);
        self.connect_sum_micros.fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
    }

    /// The number of open sessions.
    pub fn open_sessions(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let get = |a: &AtomicU64| a.load(Relaxed);
        metric(
            "sotto_bridge_connections_open",
            "gauge",
            "WebSocket sessions currently open.",
            &[(String::new(), get(&self.connections_open))],
        );
        metric(
            "sotto_bridge_connections_total",
            "counter",
            "WebSocket sessions accepted since start.",
            &[(String::new(), get(&self.connections_total))],
        );
        let refused: Vec<(String, u64)> = Refusal::ALL
            .iter()
            .zip(&self.refused)
            .map(|(r, c)| (format!("{{reason=\"{}\"}}", r.label()), get(c)))
            .collect();
        metric(
            "sotto_bridge_connections_refused_total",
            "counter",
            "Sessions refused or closed by a limit or rule, by reason.",
            &refused,
        );
        let policy: Vec<(String, u64)> = Rule::ALL
            .iter()
            .zip(&self.policy_refused)
            .map(|(r, c)| (format!("{{rule=\"{}\"}}", r.label()), get(c)))
            .collect();
        metric(
            "sotto_bridge_policy_refusals_total",
            "counter",
            "Client stanzas refused by the organisation policy, by rule.",
            &policy,
        );
        metric(
            "sotto_bridge_stanzas_total",
            "counter",
            "Top-level elements relayed, by direction.",
            &[
                (
                    "{direction=\"to_upstream\"}".into(),
                    get(&self.stanzas_to_upstream),
                ),
                (
                    "{direction=\"to_client\"}".into(),
                    get(&self.stanzas_to_client),
                ),
            ],
        );
        metric(
            "sotto_bridge_bytes_total",
            "counter",
            "Bytes of XML relayed, by direction.",
            &[
                (
                    "{direction=\"to_upstream\"}".into(),
                    get(&self.bytes_to_upstream),
                ),
                (
                    "{direction=\"to_client\"}".into(),
                    get(&self.bytes_to_client),
                ),
            ],
        );
        let name = "sotto_bridge_upstream_connect_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to connect and negotiate TLS with the upstream server.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.connect_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.connect_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            get(&self.connect_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.session_opened();
        m.refused(Refusal::HostUnknown);
        m.to_upstream(100);
        m.upstream_connected(Duration::from_millis(20));
        m.policy_refused(Rule::E2e);
        let text = m.render();
        assert!(text.contains("sotto_bridge_policy_refusals_total{rule=\"e2e\"} 1"));
        assert!(text.contains("sotto_bridge_policy_refusals_total{rule=\"domain\"} 0"));
        assert!(text.contains("sotto_bridge_connections_open 1"));
        assert!(text.contains("sotto_bridge_connections_refused_total{reason=\"host_unknown\"} 1"));
        assert!(text.contains("sotto_bridge_bytes_total{direction=\"to_upstream\"} 100"));
        assert!(text.contains("sotto_bridge_upstream_connect_seconds_bucket{le=\"0.01\"} 0"));
        assert!(text.contains("sotto_bridge_upstream_connect_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("sotto_bridge_upstream_connect_seconds_count 1"));
    }
}
