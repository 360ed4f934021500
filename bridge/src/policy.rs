//! Organisation policy (`[policy]`): which addresses members may reach, whether messages must be
//! end-to-end encrypted, and which upload service and file size they may use.
//!
//! The bridge sees routing, not content: every rule looks only at a stanza's name, its `type`
//! and `to` attributes, and the names of its direct children (`<body/>`, OMEMO `<encrypted/>`,
//! an upload `<request/>`). Nothing here reads a body, a subject or a key.
//!
//! A refused stanza is never forwarded. How the refusal reaches the client without breaking
//! XEP-0198 counting is the relay's business (see `relay.rs`, "Refusals and XEP-0198").

use std::collections::HashMap;

use crate::config::PolicyConfig;
use crate::xml::{self, ElementInfo};

/// OMEMO 0.3 (`eu.siacs.conversations.axolotl`), what Conversations, Dino, Gajim and Sotto use.
pub const OMEMO_LEGACY_NS: &str = "eu.siacs.conversations.axolotl";
/// OMEMO 0.8+ (`urn:xmpp:omemo:2`).
pub const OMEMO_2_NS: &str = "urn:xmpp:omemo:2";
/// XEP-0363 HTTP File Upload.
pub const HTTP_UPLOAD_NS: &str = "urn:xmpp:http:upload:0";
/// RFC 6120 §8.3 stanza error conditions.
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Which rule refused a stanza; one metrics label and audit value each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The recipient's domain is not in the allowed list.
    Domain,
    /// A message with a body and no OMEMO element while end-to-end encryption is required.
    E2e,
    /// An upload slot requested from a service other than `upload_service`.
    UploadService,
    /// An upload slot requested for a file larger than `max_upload_bytes`.
    UploadSize,
}

impl Rule {
    /// Every rule, in metrics order.
    pub const ALL: [Rule; 4] = [
        Rule::Domain,
        Rule::E2e,
        Rule::UploadService,
        Rule::UploadSize,
    ];

    /// The label used in metrics and the audit log.
    pub fn label(self) -> &'static str {
        match self {
            Rule::Domain => "domain",
            Rule::E2e => "e2e",
            Rule::UploadService => "upload_service",
            Rule::UploadSize => "upload_size",
        }
    }

    /// What the user is told, in the error's `<text/>`.
    pub fn user_text(self) -> &'static str {
        match self {
            Rule::Domain => {
                "Your organisation does not allow contact with addresses at this domain."
            }
            Rule::E2e => {
                "Your organisation requires end-to-end encryption: this message was not sent because it was not encrypted."
            }
            Rule::UploadService => "Your organisation does not allow uploads to this service.",
            Rule::UploadSize => "Your organisation does not allow files this large.",
        }
    }
}

/// A refusal: what to count, audit and answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The rule.
    pub rule: Rule,
    /// The domain the stanza was addressed to, if it names one.
    pub target_domain: Option<String>,
    /// The member's group, when a group's rules applied.
    pub group: Option<String>,
    /// `message`, `presence` or `iq`.
    pub stanza: &'static str,
    /// Whether an error stanza may be sent back (never for errors, nor IQ results: RFC 6120
    /// §8.3.1 and §8.2.3).
    pub answer: bool,
}

struct Group {
    name: String,
    allowed_domains: Option<Vec<String>>,
    require_e2e: Option<bool>,
}

/// The compiled `[policy]`.
pub struct Policy {
    allowed_domains: Vec<String>,
    require_e2e: bool,
    exempt: Vec<String>,
    upload_service: Option<String>,
    max_upload_bytes: Option<u64>,
    groups: Vec<Group>,
    /// Lower-cased bare JID → index into `groups`.
    members: HashMap<String, usize>,
}

fn lower_all(list: &[String]) -> Vec<String> {
    list.iter().map(|d| normalise_domain(d)).collect()
}

fn normalise_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_lowercase()
}

impl Policy {
    /// Compiles a validated configuration section.
    pub fn new(config: &PolicyConfig) -> Self {
        let mut members = HashMap::new();
        let groups = config
            .group
            .iter()
            .enumerate()
            .map(|(i, g)| {
                for member in &g.members {
                    members.insert(member.to_lowercase(), i);
                }
                Group {
                    name: g.name.clone(),
                    allowed_domains: g.allowed_domains.as_deref().map(lower_all),
                    require_e2e: g.require_e2e,
                }
            })
            .collect();
        Self {
            allowed_domains: lower_all(&config.allowed_domains),
            require_e2e: config.require_e2e,
            exempt: config
                .exempt_addresses
                .iter()
                .map(|a| a.to_lowercase())
                .collect(),
            upload_service: config.upload_service.as_deref().map(normalise_domain),
            max_upload_bytes: config.max_upload_bytes,
            groups,
            members,
        }
    }

    /// Whether any rule can refuse anything.
    pub fn is_active(&self) -> bool {
        !self.allowed_domains.is_empty()
            || self.require_e2e
            || self.upload_service.is_some()
            || self.max_upload_bytes.is_some()
            || !self.groups.is_empty()
    }

    /// Checks one client→server element sent by `account` (bare JID, if known). `None`: forward.
    pub fn check(&self, account: Option<&str>, info: &ElementInfo) -> Option<Refused> {
        let stanza = match info.local_name.as_str() {
            "message" => "message",
            "presence" => "presence",
            "iq" => "iq",
            _ => return None,
        };
        let group = account.and_then(|a| {
            self.members
                .get(&a.to_lowercase())
                .and_then(|&i| self.groups.get(i))
        });
        let allowed = group
            .and_then(|g| g.allowed_domains.as_deref())
            .unwrap_or(&self.allowed_domains);
        let require_e2e = group
            .and_then(|g| g.require_e2e)
            .unwrap_or(self.require_e2e);
        let kind = info.attr("type").unwrap_or(match stanza {
            "message" => "normal",
            "presence" => "available",
            _ => "",
        });
        let to = info.attr("to");
        let target_domain = to.and_then(jid_domain);
        let refuse = |rule: Rule| {
            Some(Refused {
                rule,
                target_domain: target_domain.clone(),
                group: group.map(|g| g.name.clone()),
                stanza,
                answer: kind != "error" && !(stanza == "iq" && kind == "result"),
            })
        };
        // 1. Recipient domain. A stanza without `to` goes to the account itself or its server.
        if let Some(to) = to {
            if !allowed.is_empty() {
                let ends_relationship = stanza == "presence"
                    && matches!(
                        kind,
                        "unavailable" | "unsubscribe" | "unsubscribed" | "error"
                    );
                let permitted = jid_domain(to).is_some_and(|d| allowed.contains(&d));
                if !permitted && !ends_relationship {
                    return refuse(Rule::Domain);
                }
            }
        }
        // 2. File upload slots (XEP-0363).
        if stanza == "iq" && kind == "get" {
            if let Some(i) = info
                .children
                .iter()
                .position(|(ns, name)| ns == HTTP_UPLOAD_NS && name == "request")
            {
                if let Some(service) = &self.upload_service {
                    if target_domain.as_deref() != Some(service.as_str()) {
                        return refuse(Rule::UploadService);
                    }
                }
                if let Some(max) = self.max_upload_bytes {
                    let size = info
                        .child_attributes
                        .get(i)
                        .and_then(|attrs| attrs.iter().find(|(n, _)| n == "size"))
                        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
                    if size.is_none_or(|size| size > max) {
                        return refuse(Rule::UploadSize);
                    }
                }
            }
        }
        // 3. End-to-end encryption: a body needs an OMEMO element beside it.
        if require_e2e && stanza == "message" && kind != "error" {
            // A body is a child in the stanza's own namespace (`jabber:client`), which is what
            // the server treats as the message's body.
            let has_body = info
                .children
                .iter()
                .any(|(ns, name)| name == "body" && *ns == info.namespace);
            let encrypted = info.children.iter().any(|(ns, name)| {
                name == "encrypted" && (ns == OMEMO_LEGACY_NS || ns == OMEMO_2_NS)
            });
            if has_body && !encrypted && !self.is_exempt(to.or(account)) {
                return refuse(Rule::E2e);
            }
        }
        None
    }

    fn is_exempt(&self, address: Option<&str>) -> bool {
        let Some(address) = address else {
            return false;
        };
        let bare = bare_jid(address).to_lowercase();
        let domain = jid_domain(address);
        self.exempt
            .iter()
            .any(|e| *e == bare || domain.as_deref() == Some(e.as_str()))
    }
}

/// The bare part of a JID (RFC 7622: everything before the first `/`).
pub fn bare_jid(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// The resource part of a full JID.
pub fn resource_of(jid: &str) -> Option<&str> {
    jid.split_once('/').map(|(_, resource)| resource)
}

/// The domain of a JID, lower-cased; `None` for something that is not a JID.
pub fn jid_domain(jid: &str) -> Option<String> {
    let bare = bare_jid(jid);
    let domain = match bare.split_once('@') {
        Some((local, domain)) if !local.is_empty() => domain,
        Some(_) => return None,
        None => bare,
    };
    if domain.is_empty() || domain.contains('@') || domain.chars().any(char::is_whitespace) {
        return None;
    }
    Some(normalise_domain(domain))
}

/// The error a refused stanza is answered with (RFC 6120 §8.3): same name and id, `from` and
/// `to` swapped, `<not-allowed/>` with a text for the user. The original payload is not
/// included (it may be content). `own` is the account's full JID when known.
pub fn error_stanza(info: &ElementInfo, own: Option<&str>, rule: Rule) -> String {
    let mut out = format!(
        "<{} xmlns='{}' type='error'",
        info.local_name,
        xml::JABBER_CLIENT_NS
    );
    let mut attr = |name: &str, value: &str| {
        out.push(' ');
        out.push_str(name);
        out.push_str("='");
        out.push_str(&xml::escape_attr(value));
        out.push('\'');
    };
    if let Some(id) = info.attr("id") {
        attr("id", id);
    }
    let from = info.attr("to").or(own.map(bare_jid));
    if let Some(from) = from {
        attr("from", from);
    }
    if let Some(to) = info.attr("from").or(own) {
        attr("to", to);
    }
    out.push_str(&format!(
        "><error type='cancel'><not-allowed xmlns='{STANZAS_NS}'/><text xmlns='{STANZAS_NS}' xml:lang='en'>{}</text></error></{}>",
        xml::escape_attr(rule.user_text()),
        info.local_name
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::{GroupConfig, PolicyConfig};
    use crate::xml::{parse_client_frame, ClientFrame, XmlLimits};

    fn info(frame: &str) -> ElementInfo {
        match parse_client_frame(frame, &XmlLimits::default()).unwrap() {
            ClientFrame::Element(info) => info,
            other => panic!("{other:?}"),
        }
    }

    fn policy(edit: impl FnOnce(&mut PolicyConfig)) -> Policy {
        let mut config = PolicyConfig::default();
        edit(&mut config);
        Policy::new(&config)
    }

    fn rule(p: &Policy, account: &str, frame: &str) -> Option<Rule> {
        p.check(Some(account), &info(frame)).map(|r| r.rule)
    }

    const ME: &str = "alice@example.org";

    #[test]
    fn domains() {
        let p = policy(|c| {
            c.allowed_domains = vec!["example.org".into(), "Conference.example.org".into()]
        });
        let msg = |to: &str| {
            format!("<message xmlns='jabber:client' to='{to}' type='chat'><body>x</body></message>")
        };
        assert_eq!(rule(&p, ME, &msg("bob@example.org")), None);
        assert_eq!(rule(&p, ME, &msg("room@conference.EXAMPLE.org/nick")), None);
        assert_eq!(rule(&p, ME, &msg("eve@evil.example")), Some(Rule::Domain));
        assert_eq!(
            rule(&p, ME, &msg("eve@sub.example.org")),
            Some(Rule::Domain)
        );
        assert_eq!(rule(&p, ME, &msg("@broken")), Some(Rule::Domain));
        // No `to`: the account itself.
        assert_eq!(
            rule(
                &p,
                ME,
                "<message xmlns='jabber:client'><body>x</body></message>"
            ),
            None
        );
        let presence = |kind: &str| {
            format!("<presence xmlns='jabber:client' to='eve@evil.example' type='{kind}'/>")
        };
        for kind in ["subscribe", "subscribed", "probe"] {
            assert_eq!(rule(&p, ME, &presence(kind)), Some(Rule::Domain), "{kind}");
        }
        for kind in ["unsubscribe", "unsubscribed", "unavailable", "error"] {
            assert_eq!(rule(&p, ME, &presence(kind)), None, "{kind}");
        }
        assert_eq!(
            rule(
                &p,
                ME,
                "<presence xmlns='jabber:client' to='room@evil.example/me'/>"
            ),
            Some(Rule::Domain)
        );
        assert_eq!(rule(&p, ME, "<presence xmlns='jabber:client'/>"), None);
        let iq = info("<iq xmlns='jabber:client' type='get' id='1' to='evil.example'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
        let refused = p.check(Some(ME), &iq).unwrap();
        assert_eq!(refused.target_domain.as_deref(), Some("evil.example"));
        assert!(refused.answer);
        let result =
            info("<iq xmlns='jabber:client' type='result' id='1' to='eve@evil.example/r'/>");
        assert!(!p.check(Some(ME), &result).unwrap().answer);
        // Nonzas are not stanzas.
        assert_eq!(rule(&p, ME, "<r xmlns='urn:xmpp:sm:3'/>"), None);
        assert!(!policy(|_| ()).is_active());
        assert!(p.is_active());
    }

    #[test]
    fn end_to_end_encryption() {
        let p = policy(|c| {
            c.require_e2e = true;
            c.exempt_addresses = vec!["bot@example.org".into(), "conference.example.org".into()];
        });
        let plain = "<message xmlns='jabber:client' to='bob@example.org' id='m1' type='chat'><body>hello</body></message>";
        assert_eq!(rule(&p, ME, plain), Some(Rule::E2e));
        let omemo = "<message xmlns='jabber:client' to='bob@example.org' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted><body>I sent you an OMEMO message</body></message>";
        assert_eq!(rule(&p, ME, omemo), None);
        let omemo2 = "<message xmlns='jabber:client' to='bob@example.org'><encrypted xmlns='urn:xmpp:omemo:2'/><body>fallback</body></message>";
        assert_eq!(rule(&p, ME, omemo2), None);
        let receipt = "<message xmlns='jabber:client' to='bob@example.org'><received xmlns='urn:xmpp:receipts' id='m1'/></message>";
        assert_eq!(rule(&p, ME, receipt), None);
        let state = "<message xmlns='jabber:client' to='bob@example.org' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert_eq!(rule(&p, ME, state), None);
        let bot =
            "<message xmlns='jabber:client' to='BOT@example.org/x'><body>help</body></message>";
        assert_eq!(rule(&p, ME, bot), None);
        let room = "<message xmlns='jabber:client' to='room@conference.example.org' type='groupchat'><body>hi</body></message>";
        assert_eq!(rule(&p, ME, room), None);
        // A body nested deeper (e.g. inside another element) is not the message's body.
        let nested = "<message xmlns='jabber:client' to='bob@example.org'><x xmlns='urn:example'><body>x</body></x></message>";
        assert_eq!(rule(&p, ME, nested), None);
        let error = "<message xmlns='jabber:client' to='bob@example.org' type='error'><body>x</body></message>";
        assert_eq!(rule(&p, ME, error), None);
    }

    #[test]
    fn groups_replace_global_rules() {
        let p = policy(|c| {
            c.group = vec![GroupConfig {
                name: "kiosk".into(),
                members: vec!["Kiosk1@example.org".into()],
                allowed_domains: Some(vec!["example.org".into()]),
                require_e2e: Some(true),
            }];
        });
        let outside = "<message xmlns='jabber:client' to='x@other.example'><encrypted xmlns='urn:xmpp:omemo:2'/></message>";
        assert_eq!(rule(&p, ME, outside), None);
        let refused = p.check(Some("kiosk1@example.org"), &info(outside)).unwrap();
        assert_eq!(
            (refused.rule, refused.group.as_deref()),
            (Rule::Domain, Some("kiosk"))
        );
        let plain = "<message xmlns='jabber:client' to='bob@example.org'><body>x</body></message>";
        assert_eq!(rule(&p, ME, plain), None);
        assert_eq!(rule(&p, "kiosk1@example.org", plain), Some(Rule::E2e));
    }

    #[test]
    fn uploads() {
        let p = policy(|c| {
            c.upload_service = Some("upload.example.org".into());
            c.max_upload_bytes = Some(1000);
        });
        let request = |to: &str, size: &str| {
            format!("<iq xmlns='jabber:client' type='get' id='u' to='{to}'><request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='{size}'/></iq>")
        };
        assert_eq!(rule(&p, ME, &request("upload.example.org", "1000")), None);
        assert_eq!(
            rule(&p, ME, &request("upload.example.org", "1001")),
            Some(Rule::UploadSize)
        );
        assert_eq!(
            rule(&p, ME, &request("upload.example.org", "lots")),
            Some(Rule::UploadSize)
        );
        assert_eq!(
            rule(&p, ME, &request("files.other.example", "10")),
            Some(Rule::UploadService)
        );
    }

    #[test]
    fn error_stanzas_swap_addresses_and_carry_no_payload() {
        let frame = info("<message xmlns='jabber:client' to='eve@evil.example' id='m&apos;1' type='chat'><body>secret words</body></message>");
        let error = error_stanza(&frame, Some("alice@example.org/phone"), Rule::Domain);
        assert!(error.starts_with("<message xmlns='jabber:client' type='error' id='m&apos;1' from='eve@evil.example' to='alice@example.org/phone'>"), "{error}");
        assert!(error.contains("<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"));
        assert!(!error.contains("secret"));
        assert!(matches!(
            parse_client_frame(&error, &XmlLimits::default()),
            Ok(ClientFrame::Element(_))
        ));
        let no_to = info("<message xmlns='jabber:client' id='n'><body>x</body></message>");
        let error = error_stanza(&no_to, Some("alice@example.org/phone"), Rule::E2e);
        assert!(
            error.contains("from='alice@example.org' to='alice@example.org/phone'"),
            "{error}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_element_is_checked_without_panic(
            name in "(message|presence|iq|r|a)",
            to in "[a-zA-Z0-9@./ -]{0,40}",
            kind in "(chat|error|result|get|set|subscribe|unavailable|x)",
            children in proptest::collection::vec(
                ("(body|encrypted|request|x)", "(jabber:client|eu.siacs.conversations.axolotl|urn:xmpp:omemo:2|urn:xmpp:http:upload:0|urn:x)", "[0-9a-z]{0,6}"),
                0..4,
            ),
        ) {
            let kids: String = children
                .iter()
                .map(|(n, ns, size)| format!("<{n} xmlns='{ns}' size='{size}'/>"))
                .collect();
            let frame = format!(
                "<{name} xmlns='jabber:client' to='{}' type='{kind}' id='i'>{kids}</{name}>",
                xml::escape_attr(&to)
            );
            let Ok(ClientFrame::Element(info)) = parse_client_frame(&frame, &XmlLimits::default()) else {
                return Ok(());
            };
            let p = policy(|c| {
                c.allowed_domains = vec!["example.org".into()];
                c.require_e2e = true;
                c.upload_service = Some("upload.example.org".into());
                c.max_upload_bytes = Some(100);
            });
            if let Some(refused) = p.check(Some(ME), &info) {
                let error = error_stanza(&info, Some("alice@example.org/r"), refused.rule);
                proptest::prop_assert!(matches!(
                    parse_client_frame(&error, &XmlLimits::default()),
                    Ok(ClientFrame::Element(_))
                ));
            }
        }
    }

    #[test]
    fn jid_parts() {
        assert_eq!(jid_domain("a@B.example/r@x").as_deref(), Some("b.example"));
        assert_eq!(jid_domain("example.org.").as_deref(), Some("example.org"));
        assert_eq!(jid_domain("@x"), None);
        assert_eq!(jid_domain(""), None);
        assert_eq!(resource_of("a@b/c/d"), Some("c/d"));
        assert_eq!(bare_jid("a@b/c"), "a@b");
    }
}
