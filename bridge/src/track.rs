//! What the bridge learns about a session from its routing: which account authenticated, which
//! resource the server bound, whether a XEP-0198 session was resumed. Used by the policy (group
//! rules, error addresses) and the audit log; never logged by itself.
//!
//! The account comes from the server's answers where it can: the bind result names the full
//! JID. A resumed session has no bind, so the SASL user name the client sent (SCRAM's `n=`, or
//! PLAIN's authentication identity — the password field is never kept) stands for the account
//! after the server's `<success/>`.

use base64::Engine as _;

use crate::policy;
use crate::xml::ElementInfo;

const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0388 Extensible SASL Profile.
const SASL2_NS: &str = "urn:xmpp:sasl:2";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// XEP-0198 stream management.
pub const SM_NS: &str = "urn:xmpp:sm:3";

/// A change worth recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Milestone {
    /// The server bound a resource: the session is logged in.
    Login,
    /// The server resumed a XEP-0198 session (`previd` as the client named it).
    Resumed {
        /// The resumption id.
        previd: String,
    },
    /// The server enabled resumable stream management with this id.
    ResumableEnabled {
        /// The resumption id.
        id: String,
    },
}

/// Per-session routing knowledge.
#[derive(Debug, Default)]
pub struct Tracker {
    sasl_user: Option<String>,
    account: Option<String>,
    resource: Option<String>,
    bind_id: Option<String>,
    previd: Option<String>,
    bound: bool,
}

impl Tracker {
    /// Whether the session is logged in (bound or resumed): the policy applies from here on.
    pub fn bound(&self) -> bool {
        self.bound
    }

    /// The account's bare JID, lower-cased, once known.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The bound resource, once known.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The full JID when the resource is known, else the bare JID.
    pub fn full_jid(&self) -> Option<String> {
        match (&self.account, &self.resource) {
            (Some(a), Some(r)) => Some(format!("{a}/{r}")),
            (Some(a), None) => Some(a.clone()),
            _ => None,
        }
    }

    /// Sets the resource of a resumed session (learned from an earlier `<enabled/>`).
    pub fn set_full_jid(&mut self, full: &str) {
        self.account = Some(policy::bare_jid(full).to_lowercase());
        self.resource = policy::resource_of(full).map(str::to_owned);
    }

    /// Looks at one element the client sent.
    pub fn client_element(&mut self, info: &ElementInfo, text: &str) {
        match (info.namespace.as_str(), info.local_name.as_str()) {
            (SASL_NS, "auth") => {
                self.sasl_user = sasl_user(info.attr("mechanism").unwrap_or(""), text, "auth");
            }
            (SASL2_NS, "authenticate") => {
                self.sasl_user = sasl_user(
                    info.attr("mechanism").unwrap_or(""),
                    text,
                    "initial-response",
                );
            }
            (SM_NS, "resume") => self.previd = info.attr("previd").map(str::to_owned),
            (_, "iq")
                if info.attr("type") == Some("set")
                    && info.has_child(BIND_NS, "bind")
                    && !self.bound =>
            {
                self.bind_id = info.attr("id").map(str::to_owned);
            }
            _ => {}
        }
    }

    /// Looks at one element the server sent; `domain` is the stream's domain.
    pub fn server_element(
        &mut self,
        info: &ElementInfo,
        xml: &str,
        domain: &str,
    ) -> Option<Milestone> {
        match (info.namespace.as_str(), info.local_name.as_str()) {
            (SASL_NS, "success") => {
                if let Some(user) = &self.sasl_user {
                    self.account = Some(format!("{user}@{domain}").to_lowercase());
                }
                None
            }
            (SASL2_NS, "success") => {
                // XEP-0388: the authorized JID; a full JID when Bind 2 bound a resource.
                let jid = element_text(xml, "authorization-identifier")?;
                self.set_full_jid(&jid);
                if policy::resource_of(&jid).is_some() {
                    self.bound = true;
                    return Some(Milestone::Login);
                }
                None
            }
            (SASL_NS | SASL2_NS, "failure") => {
                self.sasl_user = None;
                None
            }
            (SM_NS, "enabled") => {
                let resumable = matches!(info.attr("resume"), Some("true" | "1"));
                match info.attr("id") {
                    Some(id) if resumable && self.bound => {
                        Some(Milestone::ResumableEnabled { id: id.to_owned() })
                    }
                    _ => None,
                }
            }
            (SM_NS, "resumed") => {
                self.bound = true;
                let previd = info
                    .attr("previd")
                    .map(str::to_owned)
                    .or_else(|| self.previd.clone())
                    .unwrap_or_default();
                Some(Milestone::Resumed { previd })
            }
            (_, "iq")
                if self.bind_id.is_some()
                    && info.attr("id") == self.bind_id.as_deref()
                    && info.attr("type") == Some("result") =>
            {
                self.bind_id = None;
                let jid = element_text(xml, "jid")?;
                self.set_full_jid(&jid);
                self.bound = true;
                Some(Milestone::Login)
            }
            _ => None,
        }
    }
}

/// The user name in a SASL initial response (SCRAM-*: `n=`; PLAIN: the authentication
/// identity). Everything else in the response, including PLAIN's password, is dropped here.
fn sasl_user(mechanism: &str, auth: &str, element: &str) -> Option<String> {
    let payload = element_text(auth, element)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .ok()?;
    let user = if mechanism.starts_with("SCRAM-") {
        // gs2-header "n,," / "y,," / "p=...,," then "n=user,r=nonce".
        let text = std::str::from_utf8(&decoded).ok()?;
        let bare = text.splitn(3, ',').nth(2)?;
        let name = bare.split(',').find_map(|f| f.strip_prefix("n="))?;
        name.replace("=2C", ",").replace("=3D", "=")
    } else if mechanism == "PLAIN" {
        let mut fields = decoded.split(|b| *b == 0);
        let _authzid = fields.next()?;
        let authcid = fields.next()?;
        String::from_utf8(authcid.to_vec()).ok()?
    } else {
        return None;
    };
    let user = user.trim().to_owned();
    (!user.is_empty() && !user.contains(['@', '/']) && user.len() <= 1023).then_some(user)
}

/// The unescaped text of the first `<local>` element in well-formed `xml` (no prefixes), or
/// `None` when there is none or it is empty.
fn element_text(xml: &str, local: &str) -> Option<String> {
    let open = format!("<{local}");
    let mut from = 0;
    let start = loop {
        let at = from + xml.get(from..)?.find(&open)?;
        let after = at + open.len();
        let rest = xml.get(after..)?;
        match rest.chars().next()? {
            '>' => break after + 1,
            c if c.is_whitespace() => {
                let close = rest.find('>')?;
                if rest.get(..close)?.ends_with('/') {
                    return None;
                }
                break after + close + 1;
            }
            _ => from = after,
        }
    };
    let len = xml.get(start..)?.find('<')?;
    let raw = xml.get(start..start + len)?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::xml::{parse_client_frame, ClientFrame, XmlLimits};

    fn info(frame: &str) -> ElementInfo {
        match parse_client_frame(frame, &XmlLimits::default()).unwrap() {
            ClientFrame::Element(info) => info,
            other => panic!("{other:?}"),
        }
    }

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn login_with_scram_then_bind() {
        let mut t = Tracker::default();
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
            b64(b"n,,n=Alice,r=abcdef")
        );
        t.client_element(&info(&auth), &auth);
        let success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1x</success>";
        assert_eq!(t.server_element(&info(success), success, "localhost"), None);
        assert_eq!(t.account(), Some("alice@localhost"));
        assert!(!t.bound());
        let bind = "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>";
        t.client_element(&info(bind), bind);
        let result = "<iq xmlns='jabber:client' type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/web-x&amp;1</jid></bind></iq>";
        assert_eq!(
            t.server_element(&info(result), result, "localhost"),
            Some(Milestone::Login)
        );
        assert!(t.bound());
        assert_eq!(t.full_jid().as_deref(), Some("alice@localhost/web-x&1"));
        let enabled = "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>";
        assert_eq!(
            t.server_element(&info(enabled), enabled, "localhost"),
            Some(Milestone::ResumableEnabled { id: "sm-1".into() })
        );
    }

    #[test]
    fn plain_keeps_only_the_user_and_resume() {
        let mut t = Tracker::default();
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            b64(b"\0bob\0bob-secret")
        );
        t.client_element(&info(&auth), &auth);
        assert_eq!(t.sasl_user.as_deref(), Some("bob"));
        assert!(!format!("{t:?}").contains("secret"));
        let success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
        t.server_element(&info(success), success, "Example.org");
        let resume = "<resume xmlns='urn:xmpp:sm:3' previd='p1' h='3'/>";
        t.client_element(&info(resume), resume);
        let resumed = "<resumed xmlns='urn:xmpp:sm:3' previd='p1' h='0'/>";
        assert_eq!(
            t.server_element(&info(resumed), resumed, "example.org"),
            Some(Milestone::Resumed {
                previd: "p1".into()
            })
        );
        assert!(t.bound());
        assert_eq!(t.full_jid().as_deref(), Some("bob@example.org"));
    }

    #[test]
    fn sasl2_with_bind2() {
        let mut t = Tracker::default();
        let auth = format!(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'><initial-response>{}</initial-response><bind xmlns='urn:xmpp:bind:0'/></authenticate>",
            b64(b"n,,n=carol,r=xyz")
        );
        t.client_element(&info(&auth), &auth);
        assert_eq!(t.sasl_user.as_deref(), Some("carol"));
        let success = "<success xmlns='urn:xmpp:sasl:2'><additional-data>dj1x</additional-data><authorization-identifier>carol@example.org/tablet</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/></success>";
        assert_eq!(
            t.server_element(&info(success), success, "example.org"),
            Some(Milestone::Login)
        );
        assert_eq!(t.full_jid().as_deref(), Some("carol@example.org/tablet"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(xml in "\\PC{0,80}", local in "[a-z<>/ ]{0,6}") {
            let _ = element_text(&xml, &local);
            let _ = sasl_user("SCRAM-SHA-1", &xml, "auth");
            let _ = sasl_user("PLAIN", &xml, "auth");
        }
    }

    #[test]
    fn odd_input_is_ignored() {
        assert_eq!(
            sasl_user("PLAIN", "<auth xmlns='x'>!!!</auth>", "auth"),
            None
        );
        assert_eq!(sasl_user("SCRAM-SHA-1", "<auth xmlns='x'/>", "auth"), None);
        assert_eq!(
            sasl_user("EXTERNAL", "<auth xmlns='x'>PQ==</auth>", "auth"),
            None
        );
        assert_eq!(element_text("<iq><jids>x</jids></iq>", "jid"), None);
        assert_eq!(element_text("<iq><jid/></iq>", "jid"), None);
        assert_eq!(
            element_text("<iq><jid xmlns='a'>a@b/c</jid></iq>", "jid").as_deref(),
            Some("a@b/c")
        );
    }
}
