//! PEP (XEP-0163/XEP-0060), message archive queries (XEP-0313) and blocking (XEP-0191):
//! request/response protocols layered on the session, ready for OMEMO device lists and bundles.

use crate::jid::{BareJid, Jid};
use minidom::Element;

use super::{stanza_error_condition, PendingIq, Session};
use crate::error::CommandError;
use crate::event::{ChatMessage, Direction, Event};
use crate::ns;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const DATA_FORMS: &str = "jabber:x:data";
const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const BLOCKING: &str = "urn:xmpp:blocking";

/// Most items accepted from one PEP result or notification.
pub const MAX_PEP_ITEMS: usize = 256;
/// Most messages asked for in one archive page.
pub const MAX_ARCHIVE_PAGE: u32 = 200;
/// Most archive queries open at once.
pub const MAX_OPEN_QUERIES: usize = 16;

/// Identifies a request whose outcome arrives later as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// One PEP item.
#[derive(Debug, Clone, PartialEq)]
pub struct PepItem {
    /// The item id (`current` for OMEMO 0.3 nodes).
    pub id: Option<String>,
    /// Its payload element.
    pub payload: Option<Element>,
}

#[derive(Clone)]
pub(crate) struct Publish {
    node: String,
    item_id: String,
    payload: Element,
    options: Vec<(String, String)>,
    attempt: u8,
}

#[derive(Clone)]
pub(crate) enum ExtensionIq {
    Publish(RequestId, Publish),
    Configure(RequestId, Publish),
    Fetch(RequestId, BareJid, String),
    Simple(RequestId),
    Archive(RequestId, String),
    BlockList,
}

fn form(form_type: &str, fields: &[(String, String)]) -> Element {
    let field = |var: &str, value: &str, hidden: bool| {
        let mut f =
            Element::builder("field", DATA_FORMS).attr(rxml::xml_ncname!("var").into(), var);
        if hidden {
            f = f.attr(rxml::xml_ncname!("type").into(), "hidden");
        }
        f.append(Element::builder("value", DATA_FORMS).append(value).build())
            .build()
    };
    let mut x = Element::builder("x", DATA_FORMS)
        .attr(rxml::xml_ncname!("type").into(), "submit")
        .append(field("FORM_TYPE", form_type, true));
    for (var, value) in fields {
        x = x.append(field(var, value, false));
    }
    x.build()
}

fn items_of(items: &Element) -> Vec<PepItem> {
    items
        .children()
        .filter(|c| c.name() == "item")
        .take(MAX_PEP_ITEMS)
        .map(|item| PepItem {
            id: item.attr("id").map(str::to_owned),
            payload: item.children().next().cloned(),
        })
        .collect()
}

fn pubsub_error(iq: &Element) -> Option<String> {
    iq.get_child("error", ns::CLIENT).and_then(|e| {
        e.children()
            .find(|c| c.ns() == PUBSUB_ERRORS)
            .map(|c| c.name().to_owned())
    })
}

impl Session {
    fn new_request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn send_extension_iq(
        &mut self,
        kind: &str,
        to: Option<&BareJid>,
        payload: Element,
        pending: ExtensionIq,
    ) -> Result<(), CommandError> {
        self.require_online()?;
        let id = self.new_id();
        let mut iq = Element::builder("iq", ns::CLIENT)
            .attr(rxml::xml_ncname!("type").into(), kind)
            .attr(rxml::xml_ncname!("id").into(), id.as_str());
        if let Some(to) = to {
            iq = iq.attr(rxml::xml_ncname!("to").into(), to.to_string());
            if *to != self.config.jid {
                self.iq_targets.insert(id.clone(), to.clone());
            }
        }
        self.iqs.insert(id, PendingIq::Extension(Box::new(pending)));
        self.send_stanza(&iq.append(payload).build(), None)
    }

    /// Publishes `payload` as item `item_id` of our PEP node `node` with publish-options
    /// (e.g. `pubsub#access_model` = `open`). When the server's node configuration disagrees
    /// (`precondition-not-met`), the node is reconfigured and the item published again; when
    /// it rejects `pubsub#max_items` as an option (ejabberd), it is published without it.
    /// The outcome arrives as [`Event::RequestDone`] or [`Event::RequestFailed`].
    pub fn pep_publish(
        &mut self,
        node: &str,
        item_id: &str,
        payload: Element,
        options: &[(&str, &str)],
    ) -> Result<RequestId, CommandError> {
        let request = self.new_request();
        let publish = Publish {
            node: node.to_owned(),
            item_id: item_id.to_owned(),
            payload,
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            attempt: 0,
        };
        self.send_publish(request, publish)?;
        Ok(request)
    }

    fn send_publish(&mut self, request: RequestId, publish: Publish) -> Result<(), CommandError> {
        let item = Element::builder("item", PUBSUB)
            .attr(rxml::xml_ncname!("id").into(), publish.item_id.as_str())
            .append(publish.payload.clone())
            .build();
        let mut pubsub = Element::builder("pubsub", PUBSUB).append(
            Element::builder("publish", PUBSUB)
                .attr(rxml::xml_ncname!("node").into(), publish.node.as_str())
                .append(item)
                .build(),
        );
        if !publish.options.is_empty() {
            pubsub = pubsub.append(
                Element::builder("publish-options", PUBSUB)
                    .append(form(
                        "http://jabber.org/protocol/pubsub#publish-options",
                        &publish.options,
                    ))
                    .build(),
            );
        }
        self.send_extension_iq(
            "set",
            None,
            pubsub.build(),
            ExtensionIq::Publish(request, publish),
        )
    }

    /// Fetches the items of `jid`'s PEP node `node`; answered by [`Event::PepItems`] or
    /// [`Event::RequestFailed`].
    pub fn pep_fetch(&mut self, jid: &BareJid, node: &str) -> Result<RequestId, CommandError> {
        self.fetch_items(jid, node, None)
    }

    /// Fetches only item `item_id` of `jid`'s PEP node `node` (XEP-0060 §6.5.8), e.g. one
    /// picture of a data node that may hold several; answered as [`Session::pep_fetch`] is.
    pub fn pep_fetch_item(
        &mut self,
        jid: &BareJid,
        node: &str,
        item_id: &str,
    ) -> Result<RequestId, CommandError> {
        self.fetch_items(jid, node, Some(item_id))
    }

    fn fetch_items(
        &mut self,
        jid: &BareJid,
        node: &str,
        item_id: Option<&str>,
    ) -> Result<RequestId, CommandError> {
        let request = self.new_request();
        let mut items =
            Element::builder("items", PUBSUB).attr(rxml::xml_ncname!("node").into(), node);
        if let Some(item_id) = item_id {
            items = items.append(
                Element::builder("item", PUBSUB)
                    .attr(rxml::xml_ncname!("id").into(), item_id)
                    .build(),
            );
        }
        let pubsub = Element::builder("pubsub", PUBSUB)
            .append(items.build())
            .build();
        self.send_extension_iq(
            "get",
            Some(jid),
            pubsub,
            ExtensionIq::Fetch(request, jid.clone(), node.to_owned()),
        )?;
        Ok(request)
    }

    /// Retracts item `item_id` from our node `node`, notifying subscribers.
    pub fn pep_retract(&mut self, node: &str, item_id: &str) -> Result<RequestId, CommandError> {
        let request = self.new_request();
        let pubsub = Element::builder("pubsub", PUBSUB)
            .append(
                Element::builder("retract", PUBSUB)
                    .attr(rxml::xml_ncname!("node").into(), node)
                    .attr(rxml::xml_ncname!("notify").into(), "true")
                    .append(
                        Element::builder("item", PUBSUB)
                            .attr(rxml::xml_ncname!("id").into(), item_id)
                            .build(),
                    )
                    .build(),
            )
            .build();
        self.send_extension_iq("set", None, pubsub, ExtensionIq::Simple(request))?;
        Ok(request)
    }

    /// Deletes our node `node` entirely.
    pub fn pep_delete(&mut self, node: &str) -> Result<RequestId, CommandError> {
        let request = self.new_request();
        let pubsub = Element::builder("pubsub", PUBSUB_OWNER)
            .append(
                Element::builder("delete", PUBSUB_OWNER)
                    .attr(rxml::xml_ncname!("node").into(), node)
                    .build(),
            )
            .build();
        self.send_extension_iq("set", None, pubsub, ExtensionIq::Simple(request))?;
        Ok(request)
    }

    /// Asks our archive (XEP-0313) for up to `max` messages exchanged with `with`, older than
    /// the archive id `before` (the newest page when `None`). Results arrive as
    /// [`Event::ArchivedMessage`] followed by one [`Event::ArchiveFinished`].
    pub fn archive_query(
        &mut self,
        with: &BareJid,
        before: Option<&str>,
        max: u32,
    ) -> Result<RequestId, CommandError> {
        if self.mam_queries.len() >= MAX_OPEN_QUERIES {
            return Err(CommandError::QueueFull);
        }
        let request = self.new_request();
        let query_id = self.new_id();
        let mut set = Element::builder("set", RSM).append(
            Element::builder("max", RSM)
                .append(max.clamp(1, MAX_ARCHIVE_PAGE).to_string())
                .build(),
        );
        set = set.append(
            Element::builder("before", RSM)
                .append(before.unwrap_or_default())
                .build(),
        );
        let query = Element::builder("query", MAM)
            .attr(rxml::xml_ncname!("queryid").into(), query_id.as_str())
            .append(form(MAM, &[("with".to_owned(), with.to_string())]))
            .append(set.build())
            .build();
        self.send_extension_iq(
            "set",
            None,
            query,
            ExtensionIq::Archive(request, query_id.clone()),
        )?;
        self.mam_queries.insert(query_id, request);
        Ok(request)
    }

    /// Fetches the block list; answered by [`Event::BlockList`].
    pub fn fetch_block_list(&mut self) -> Result<(), CommandError> {
        self.send_extension_iq(
            "get",
            None,
            Element::bare("blocklist", BLOCKING),
            ExtensionIq::BlockList,
        )
    }

    /// Blocks (or unblocks) all communication with `jid`.
    pub fn set_blocked(&mut self, jid: &BareJid, blocked: bool) -> Result<RequestId, CommandError> {
        let request = self.new_request();
        let payload = Element::builder(if blocked { "block" } else { "unblock" }, BLOCKING)
            .append(
                Element::builder("item", BLOCKING)
                    .attr(rxml::xml_ncname!("jid").into(), jid.to_string())
                    .build(),
            )
            .build();
        self.send_extension_iq("set", None, payload, ExtensionIq::Simple(request))?;
        Ok(request)
    }

    pub(super) fn on_extension_response(&mut self, request: ExtensionIq, iq: &Element) {
        let ok = iq.attr("type") == Some("result");
        match request {
            ExtensionIq::Publish(id, _) if ok => {
                self.events.push_back(Event::RequestDone { request: id });
            }
            ExtensionIq::Publish(id, mut publish) => {
                let condition = stanza_error_condition(iq);
                let precondition = pubsub_error(iq).as_deref() == Some("precondition-not-met");
                let has_max_items = publish.options.iter().any(|(k, _)| k == "pubsub#max_items");
                if precondition && publish.attempt == 0 {
                    // The node exists with another configuration: make it match, then publish.
                    publish.attempt = 1;
                    let configure = Element::builder("pubsub", PUBSUB_OWNER)
                        .append(
                            Element::builder("configure", PUBSUB_OWNER)
                                .attr(rxml::xml_ncname!("node").into(), publish.node.as_str())
                                .append(form(
                                    "http://jabber.org/protocol/pubsub#node_config",
                                    &publish.options,
                                ))
                                .build(),
                        )
                        .build();
                    if self
                        .send_extension_iq(
                            "set",
                            None,
                            configure,
                            ExtensionIq::Configure(id, publish),
                        )
                        .is_err()
                    {
                        self.events.push_back(Event::RequestFailed {
                            request: id,
                            condition,
                        });
                    }
                } else if has_max_items && publish.attempt < 2 {
                    // ejabberd refuses pubsub#max_items as a publish option: try without it.
                    publish.options.retain(|(k, _)| k != "pubsub#max_items");
                    publish.attempt = 2;
                    if self.send_publish(id, publish).is_err() {
                        self.events.push_back(Event::RequestFailed {
                            request: id,
                            condition,
                        });
                    }
                } else {
                    self.events.push_back(Event::RequestFailed {
                        request: id,
                        condition,
                    });
                }
            }
            ExtensionIq::Configure(id, mut publish) => {
                if ok {
                    publish.attempt = 2;
                    if self.send_publish(id, publish).is_err() {
                        self.events.push_back(Event::RequestFailed {
                            request: id,
                            condition: "not-online".into(),
                        });
                    }
                } else {
                    self.events.push_back(Event::RequestFailed {
                        request: id,
                        condition: stanza_error_condition(iq),
                    });
                }
            }
            ExtensionIq::Fetch(id, from, node) => {
                if ok {
                    let items = iq
                        .get_child("pubsub", PUBSUB)
                        .and_then(|p| p.get_child("items", PUBSUB))
                        .map(items_of)
                        .unwrap_or_default();
                    self.events.push_back(Event::PepItems {
                        request: id,
                        from,
                        node,
                        items,
                    });
                } else {
                    self.events.push_back(Event::RequestFailed {
                        request: id,
                        condition: stanza_error_condition(iq),
                    });
                }
            }
            ExtensionIq::Simple(id) => {
                self.events.push_back(if ok {
                    Event::RequestDone { request: id }
                } else {
                    Event::RequestFailed {
                        request: id,
                        condition: stanza_error_condition(iq),
                    }
                });
            }
            ExtensionIq::Archive(id, query_id) => {
                self.mam_queries.remove(&query_id);
                if ok {
                    let fin = iq.get_child("fin", MAM);
                    let complete =
                        fin.is_some_and(|f| matches!(f.attr("complete"), Some("true" | "1")));
                    let first = fin
                        .and_then(|f| f.get_child("set", RSM))
                        .and_then(|s| s.get_child("first", RSM))
                        .map(Element::text);
                    self.events.push_back(Event::ArchiveFinished {
                        request: id,
                        complete,
                        first,
                    });
                } else {
                    self.events.push_back(Event::RequestFailed {
                        request: id,
                        condition: stanza_error_condition(iq),
                    });
                }
            }
            ExtensionIq::BlockList => {
                if let Some(list) = iq.get_child("blocklist", BLOCKING) {
                    let jids = list
                        .children()
                        .filter(|c| c.name() == "item")
                        .filter_map(|c| c.attr("jid")?.parse::<BareJid>().ok())
                        .take(10_000)
                        .collect();
                    self.events.push_back(Event::BlockList(jids));
                }
            }
        }
    }

    /// Server pushes of block-list changes (XEP-0191 §3.3). Returns whether it was one.
    pub(super) fn on_extension_push(&mut self, iq: &Element) -> bool {
        for (name, blocked) in [("block", true), ("unblock", false)] {
            if let Some(change) = iq.get_child(name, BLOCKING) {
                for jid in change
                    .children()
                    .filter_map(|c| c.attr("jid")?.parse::<BareJid>().ok())
                    .take(10_000)
                {
                    self.events.push_back(Event::BlockChanged { jid, blocked });
                }
                return true;
            }
        }
        false
    }

    /// PEP notifications and archive results. Returns whether the message was one of them.
    pub(super) fn on_extension_message(&mut self, message: &Element, from: Option<&Jid>) -> bool {
        if let Some(event) = message.get_child("event", PUBSUB_EVENT) {
            let Some(items) = event.get_child("items", PUBSUB_EVENT) else {
                return true;
            };
            // PEP notifications come from the publisher's bare JID (XEP-0163 §4.3.1).
            let Some(publisher) = from.filter(|f| f.resource().is_none()).map(Jid::to_bare) else {
                return true;
            };
            let node = items.attr("node").unwrap_or_default().to_owned();
            let retracted = items
                .children()
                .filter(|c| c.name() == "retract")
                .filter_map(|c| c.attr("id").map(str::to_owned))
                .take(MAX_PEP_ITEMS)
                .collect();
            self.events.push_back(Event::PepNotification {
                from: publisher,
                node,
                items: items_of(items),
                retracted,
            });
            return true;
        }
        if let Some(result) = message.get_child("result", MAM) {
            // XEP-0313 §8.2: only our own archive, only for a query we made.
            let own = from.is_none_or(|f| f.to_bare() == self.config.jid && f.resource().is_none());
            let request = result
                .attr("queryid")
                .and_then(|q| self.mam_queries.get(q))
                .copied();
            let (true, Some(request)) = (own, request) else {
                return true;
            };
            let archive_id = result.attr("id").unwrap_or_default().to_owned();
            let forwarded = result.get_child("forwarded", ns::FORWARD);
            let stamp = forwarded
                .and_then(|f| f.get_child("delay", ns::DELAY))
                .and_then(|d| d.attr("stamp"))
                .map(str::to_owned);
            let Some(inner) = forwarded.and_then(|f| f.get_child("message", ns::CLIENT)) else {
                return true;
            };
            let Some(sender) = inner.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
                return true;
            };
            let to = inner.attr("to").and_then(|t| t.parse::<Jid>().ok());
            let outgoing = sender.to_bare() == self.config.jid;
            let peer = if outgoing {
                match &to {
                    Some(to) => to.to_bare(),
                    None => return true,
                }
            } else {
                sender.to_bare()
            };
            let body = inner.get_child("body", ns::CLIENT).map(Element::text);
            let id = inner
                .get_child("origin-id", ns::SID)
                .and_then(|o| o.attr("id"))
                .or_else(|| inner.attr("id"))
                .map(str::to_owned);
            self.events.push_back(Event::ArchivedMessage {
                request,
                archive_id,
                message: ChatMessage {
                    id,
                    from: sender,
                    to,
                    peer,
                    direction: if outgoing {
                        Direction::Outgoing
                    } else {
                        Direction::Incoming
                    },
                    carbon: false,
                    body,
                    receipt_requested: false,
                    delayed: stamp,
                    replaces: super::replaced_id(inner),
                    retracts: super::retracted_id(inner),
                    stanza: inner.clone(),
                },
            });
            return true;
        }
        false
    }
}
