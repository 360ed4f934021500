//! Personal ("my device") mode's storage: what is kept, under which names, and how it is sealed.
//!
//! Everything goes through `sotto-vault`: a random data key seals each record with
//! XChaCha20-Poly1305 under the record's name; the data key is kept only wrapped by a key
//! derived with Argon2id ([`KdfParams::BROWSER`], recorded with it) from the account password.
//! The browser's storage ([`crate::idb`]) sees only:
//!
//! | key                  | value                                                      |
//! |----------------------|------------------------------------------------------------|
//! | `<account>/key`      | the wrapped data key (parameters, salt, nonce, ciphertext) |
//! | `<account>/device`   | sealed: the OMEMO device (`Omemo::save`)                    |
//! | `<account>/roster`   | sealed: the roster and its version (XEP-0237)              |
//! | `<account>/history`  | sealed: the last [`MAX_SAVED_MESSAGES`] of each conversation |
//!
//! `<account>` is `a1-` and the SHA-256 of the bare JID (domain-separated), so several accounts
//! can share a browser profile without the store naming any of them. Someone holding the
//! profile who *guesses* an account name can confirm that it was used here; nothing else is
//! readable (docs/SECURITY.md §6).
//!
//! A vault is created only once the server has accepted the password (so a typo cannot lock
//! the data under a wrong passphrase); an existing one is unlocked before connecting, and a
//! password that does not open it stops the login with a clear error and changes nothing.

use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sotto_session::document::{self, DocumentError};
use sotto_session::{BareJid, Direction, RosterItem, Subscription};
use sotto_vault::{KdfParams, Vault, VaultError, WrappedKey};
use zeroize::Zeroizing;

use crate::idb::{Db, StorageError};
use crate::store::{DeliveryState, Message, MAX_EDIT_IDS};

/// Most messages kept per conversation on disk (the newest).
pub const MAX_SAVED_MESSAGES: usize = 500;
/// Most conversations kept on disk (those with the newest messages).
pub const MAX_SAVED_CONVERSATIONS: usize = 500;
/// The version of the roster document: its first byte, before the postcard encoding of the
/// document (version 1, JSON, was only ever written by pre-release builds).
const ROSTER_VERSION: u8 = 2;
/// The version of the history document. Version 3 added each message's time; version 2
/// documents (the same without times) are still read.
const HISTORY_VERSION: u8 = 3;
const HISTORY_VERSION_UNTIMED: u8 = 2;

const KEY: &str = "key";
const DEVICE: &str = "device";
const ROSTER: &str = "roster";
const HISTORY: &str = "history";

/// Why personal storage could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepError {
    /// The password does not open the data saved on this device for this account.
    WrongPassphrase,
    /// The saved data is damaged or in an unknown format (nothing was changed).
    Damaged(&'static str),
    /// The browser's storage failed.
    Storage(StorageError),
}

impl From<StorageError> for KeepError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<VaultError> for KeepError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::WrongPassphrase => Self::WrongPassphrase,
            VaultError::Corrupt => Self::Damaged("a saved record does not authenticate"),
            VaultError::UnknownFormat => Self::Damaged("saved data in an unknown format"),
            VaultError::BadParams(_) => Self::Damaged("the saved key's parameters are refused"),
            VaultError::TooLarge(_) => Self::Damaged("a saved record is too large"),
        }
    }
}

/// The storage prefix of `jid`'s records.
pub fn account_prefix(jid: &BareJid) -> String {
    let mut hash = Sha256::new();
    hash.update(b"sotto personal store v1\0");
    hash.update(jid.as_str().as_bytes());
    let digest = hash.finalize();
    let mut out = String::from("a1-");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out.push('/');
    out
}

/// What was saved for an account, opened.
#[derive(Default)]
pub struct Restored {
    /// The OMEMO device document.
    pub device: Option<Zeroizing<Vec<u8>>>,
    /// The roster's version and items.
    pub roster: Option<(String, Vec<RosterItem>)>,
    /// Conversations, each oldest first.
    pub history: Vec<(BareJid, Vec<Message>)>,
}

/// An unlocked account store: seals and writes records. Cheap to clone; the data key is wiped
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Keeper {
    db: Db,
    prefix: String,
    vault: Rc<Vault>,
}

impl Keeper {
    /// Opens `jid`'s saved data with `password`: `Ok(None)` when nothing is saved for it.
    pub async fn open(
        jid: &BareJid,
        password: &str,
    ) -> Result<Option<(Keeper, Restored)>, KeepError> {
        let db = Db::open().await?;
        let prefix = account_prefix(jid);
        let Some(wrapped) = db.get(&format!("{prefix}{KEY}")).await? else {
            return Ok(None);
        };
        let wrapped = WrappedKey::from_bytes(&wrapped)?;
        let vault = Vault::unlock(password.as_bytes(), &wrapped)?;
        let keeper = Keeper {
            db,
            prefix,
            vault: Rc::new(vault),
        };
        let restored = Restored {
            device: keeper.read(DEVICE).await?,
            roster: match keeper.read(ROSTER).await? {
                Some(bytes) => Some(decode_roster(&bytes)?),
                None => None,
            },
            history: match keeper.read(HISTORY).await? {
                Some(bytes) => decode_history(&bytes)?,
                None => Vec::new(),
            },
        };
        Ok(Some((keeper, restored)))
    }

    /// Creates `jid`'s store, its data key wrapped under `password`, replacing whatever was
    /// saved for it. Call only once the server accepted the password.
    pub async fn create(jid: &BareJid, password: &str) -> Result<Keeper, KeepError> {
        let db = Db::open().await?;
        let prefix = account_prefix(jid);
        let mut rng = rand_core::OsRng;
        let (vault, wrapped) = Vault::create(password.as_bytes(), KdfParams::BROWSER, &mut rng)?;
        db.delete_prefix(&prefix).await?;
        db.put_all(&[(format!("{prefix}{KEY}"), wrapped.to_bytes())])
            .await?;
        Ok(Keeper {
            db,
            prefix,
            vault: Rc::new(vault),
        })
    }

    async fn read(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeepError> {
        let key = format!("{}{name}", self.prefix);
        match self.db.get(&key).await? {
            Some(sealed) => Ok(Some(self.vault.open(&key, &sealed)?)),
            None => Ok(None),
        }
    }

    /// Seals and writes the OMEMO device document.
    pub async fn save_device(&self, document: &[u8]) -> Result<(), KeepError> {
        self.write(DEVICE, document).await
    }

    /// Seals and writes the roster.
    pub async fn save_roster(&self, version: &str, items: &[RosterItem]) -> Result<(), KeepError> {
        self.write(ROSTER, &encode_roster(version, items)).await
    }

    /// Seals and writes the conversations.
    pub async fn save_history(
        &self,
        conversations: &[(BareJid, Vec<Message>)],
    ) -> Result<(), KeepError> {
        self.write(HISTORY, &encode_history(conversations)).await
    }

    async fn write(&self, name: &str, plain: &[u8]) -> Result<(), KeepError> {
        let key = format!("{}{name}", self.prefix);
        let sealed = self.vault.seal(&key, plain, &mut rand_core::OsRng)?;
        self.db.put_all(&[(key, sealed)]).await?;
        Ok(())
    }

    /// Wraps the data key under `password` instead (after a password change): one record is
    /// rewritten, nothing is re-encrypted.
    pub async fn rewrap(&self, password: &str) -> Result<(), KeepError> {
        let wrapped = self.vault.rewrap(
            password.as_bytes(),
            KdfParams::BROWSER,
            &mut rand_core::OsRng,
        )?;
        self.db
            .put_all(&[(format!("{}{KEY}", self.prefix), wrapped.to_bytes())])
            .await?;
        Ok(())
    }

    /// Deletes everything saved for this account on this device.
    pub async fn forget(&self) -> Result<(), KeepError> {
        self.db.delete_prefix(&self.prefix).await?;
        Ok(())
    }
}

/// Deletes whatever was saved for `jid` on this device without opening it (offered when the
/// saved data cannot be opened).
pub async fn forget(jid: &BareJid) -> Result<(), KeepError> {
    let db = Db::open().await?;
    db.delete_prefix(&account_prefix(jid)).await?;
    Ok(())
}

// ----- documents (pure, tested natively) -----

#[derive(Serialize, Deserialize)]
struct RosterDoc {
    roster_version: String,
    items: Vec<SavedContact>,
}

#[derive(Serialize, Deserialize)]
struct SavedContact {
    jid: String,
    name: Option<String>,
    subscription: String,
    pending_out: bool,
    groups: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct HistoryDoc<M = SavedMessage> {
    conversations: Vec<SavedConversation<M>>,
}

#[derive(Serialize, Deserialize)]
struct SavedConversation<M> {
    peer: String,
    messages: Vec<M>,
}

/// A message as version 3 saves it: what version 2 saved, then what came since. Postcard
/// writes a nested struct as its fields in order, so this is version 2's layout with fields
/// added at the end, and version 2's messages read as `SavedText`.
#[derive(Serialize, Deserialize)]
struct SavedMessage {
    text: SavedText,
    /// Milliseconds since the Unix epoch.
    at: Option<i64>,
    edited: bool,
    edit_ids: Vec<String>,
    retracted: bool,
}

/// A message's text and state: all that a version 2 history document saved of it.
#[derive(Serialize, Deserialize)]
struct SavedText {
    id: Option<String>,
    outgoing: bool,
    body: String,
    encrypted: bool,
    state: String,
    error: Option<String>,
}

impl From<SavedText> for SavedMessage {
    fn from(text: SavedText) -> Self {
        // Moved, not copied: the texts are wiped once, in the converted document.
        Self {
            text,
            at: None,
            edited: false,
            edit_ids: Vec::new(),
            retracted: false,
        }
    }
}

fn subscription_name(s: Subscription) -> &'static str {
    match s {
        Subscription::None => "none",
        Subscription::To => "to",
        Subscription::From => "from",
        Subscription::Both => "both",
    }
}

/// Reads a roster or history document of `version`; `what` names it in errors.
fn from_document<T: DeserializeOwned>(
    version: u8,
    bytes: &[u8],
    what: &'static str,
) -> Result<T, KeepError> {
    document::decode(version, bytes).map_err(|e| match e {
        DocumentError::Earlier | DocumentError::Newer(_) => KeepError::Damaged(e.describe()),
        DocumentError::Truncated | DocumentError::Malformed => KeepError::Damaged(what),
    })
}

/// The roster document.
pub fn encode_roster(version: &str, items: &[RosterItem]) -> Zeroizing<Vec<u8>> {
    let doc = RosterDoc {
        roster_version: version.to_owned(),
        items: items
            .iter()
            .map(|i| SavedContact {
                jid: i.jid.to_string(),
                name: i.name.clone(),
                subscription: subscription_name(i.subscription).to_owned(),
                pending_out: i.pending_out,
                groups: i.groups.clone(),
            })
            .collect(),
    };
    document::encode(ROSTER_VERSION, &doc, 1024 + items.len() * 64)
}

/// Reads a roster document.
pub fn decode_roster(bytes: &[u8]) -> Result<(String, Vec<RosterItem>), KeepError> {
    let doc: RosterDoc = from_document(ROSTER_VERSION, bytes, "the saved roster")?;
    let items = doc
        .items
        .into_iter()
        .filter_map(|c| {
            Some(RosterItem {
                jid: c.jid.parse().ok()?,
                name: c.name,
                subscription: match c.subscription.as_str() {
                    "to" => Subscription::To,
                    "from" => Subscription::From,
                    "both" => Subscription::Both,
                    _ => Subscription::None,
                },
                pending_out: c.pending_out,
                groups: c.groups,
            })
        })
        .collect();
    Ok((doc.roster_version, items))
}

/// The history document: the newest [`MAX_SAVED_MESSAGES`] of each of the
/// [`MAX_SAVED_CONVERSATIONS`] conversations with the newest messages. Messages still being
/// sent are saved as failed: after a reload nobody can tell whether they left.
pub fn encode_history(conversations: &[(BareJid, Vec<Message>)]) -> Zeroizing<Vec<u8>> {
    let mut order: Vec<&(BareJid, Vec<Message>)> = conversations
        .iter()
        .filter(|(_, m)| !m.is_empty())
        .collect();
    order.sort_by_key(|(_, m)| std::cmp::Reverse(m.last().map(|m| m.seq).unwrap_or_default()));
    order.truncate(MAX_SAVED_CONVERSATIONS);
    let mut estimate = 1024;
    let mut doc = HistoryDoc {
        conversations: order
            .into_iter()
            .map(|(peer, messages)| SavedConversation {
                peer: peer.to_string(),
                messages: messages
                    .iter()
                    .skip(messages.len().saturating_sub(MAX_SAVED_MESSAGES))
                    .map(|m| {
                        estimate += 96 + m.body.len() + m.id.as_ref().map_or(0, String::len);
                        SavedMessage {
                            text: SavedText {
                                id: m.id.clone(),
                                outgoing: m.direction == Direction::Outgoing,
                                body: m.body.clone(),
                                encrypted: m.encrypted,
                                state: match m.state {
                                    DeliveryState::Sending => DeliveryState::Failed,
                                    other => other,
                                }
                                .attr()
                                .to_owned(),
                                error: m.error.clone(),
                            },
                            at: m.at,
                            edited: m.edited,
                            edit_ids: m.edit_ids.clone(),
                            retracted: m.retracted,
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    let out = document::encode(HISTORY_VERSION, &doc, estimate);
    wipe(&mut doc);
    out
}

/// Wipes the copies of the message texts a document holds.
fn wipe(doc: &mut HistoryDoc) {
    use zeroize::Zeroize as _;
    for c in &mut doc.conversations {
        for m in &mut c.messages {
            m.text.body.zeroize();
        }
    }
}

/// Reads a history document (bounded as written; more is ignored).
pub fn decode_history(bytes: &[u8]) -> Result<Vec<(BareJid, Vec<Message>)>, KeepError> {
    const WHAT: &str = "the saved history";
    let mut doc: HistoryDoc = if bytes.first() == Some(&HISTORY_VERSION_UNTIMED) {
        let untimed: HistoryDoc<SavedText> = from_document(HISTORY_VERSION_UNTIMED, bytes, WHAT)?;
        HistoryDoc {
            conversations: untimed
                .conversations
                .into_iter()
                .map(|c| SavedConversation {
                    peer: c.peer,
                    messages: c.messages.into_iter().map(SavedMessage::from).collect(),
                })
                .collect(),
        }
    } else {
        from_document(HISTORY_VERSION, bytes, WHAT)?
    };
    let mut out = Vec::new();
    for conversation in doc.conversations.iter().take(MAX_SAVED_CONVERSATIONS) {
        let Ok(peer) = conversation.peer.parse::<BareJid>() else {
            continue;
        };
        let start = conversation
            .messages
            .len()
            .saturating_sub(MAX_SAVED_MESSAGES);
        let messages = conversation
            .messages
            .iter()
            .skip(start)
            .map(|m| Message {
                id: m.text.id.clone(),
                direction: if m.text.outgoing {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
                body: m.text.body.clone(),
                encrypted: m.text.encrypted,
                state: match m.text.state.as_str() {
                    "sent" => DeliveryState::Sent,
                    "delivered" => DeliveryState::Delivered,
                    "received" => DeliveryState::Received,
                    _ => DeliveryState::Failed,
                },
                error: m.text.error.clone(),
                seq: 0,
                at: m.at,
                edited: m.edited,
                edit_ids: m.edit_ids.iter().take(MAX_EDIT_IDS).cloned().collect(),
                retracted: m.retracted,
            })
            .collect();
        out.push((peer, messages));
    }
    wipe(&mut doc);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        s.parse().expect("jid")
    }

    fn message(seq: u64, body: &str, direction: Direction, state: DeliveryState) -> Message {
        Message {
            id: Some(format!("id-{seq}")),
            direction,
            body: body.to_owned(),
            encrypted: true,
            state,
            error: None,
            seq,
            at: Some(1_796_640_000_000 + seq as i64 * 1000),
            edited: false,
            edit_ids: Vec::new(),
            retracted: false,
        }
    }

    #[test]
    fn prefix_names_no_account() {
        let prefix = account_prefix(&jid("alice@example.org"));
        assert!(prefix.starts_with("a1-") && prefix.ends_with('/'));
        assert!(!prefix.contains("alice"));
        assert_eq!(prefix.len(), 3 + 64 + 1);
        assert_ne!(prefix, account_prefix(&jid("bob@example.org")));
    }

    #[test]
    fn history_round_trip_and_bounds() {
        let bob = jid("bob@example.org");
        let carol = jid("carol@example.org");
        let mut long = Vec::new();
        for i in 0..(MAX_SAVED_MESSAGES as u64 + 10) {
            long.push(message(
                i,
                &format!("m{i}"),
                Direction::Incoming,
                DeliveryState::Received,
            ));
        }
        let conversations = vec![
            (bob.clone(), long),
            (
                carol.clone(),
                vec![
                    message(1000, "hello", Direction::Outgoing, DeliveryState::Delivered),
                    message(1001, "pending", Direction::Outgoing, DeliveryState::Sending),
                ],
            ),
            (jid("dave@example.org"), Vec::new()),
        ];
        let doc = encode_history(&conversations);
        let back = decode_history(&doc).expect("decode");
        assert_eq!(back.len(), 2, "empty conversations are not saved");
        // Newest conversation first.
        assert_eq!(back[0].0, carol);
        assert_eq!(back[0].1[0].body, "hello");
        assert_eq!(back[0].1[0].state, DeliveryState::Delivered);
        assert_eq!(
            back[0].1[1].state,
            DeliveryState::Failed,
            "unconfirmed → failed"
        );
        assert_eq!(back[1].0, bob);
        assert_eq!(back[1].1.len(), MAX_SAVED_MESSAGES);
        assert_eq!(back[1].1[0].body, "m10", "the oldest are dropped");
        assert!(decode_history(b"{").is_err());
        assert!(decode_history(b"{\"version\":1,\"conversations\":[]}").is_err());
        assert!(decode_history(&doc[..doc.len() - 1]).is_err(), "truncated");
        let mut longer = doc.to_vec();
        longer.push(0);
        assert!(decode_history(&longer).is_err(), "data after the end");
        let mut future = doc.to_vec();
        future[0] = HISTORY_VERSION + 1;
        assert_eq!(
            decode_history(&future).err(),
            Some(KeepError::Damaged("saved by a newer version of Sotto"))
        );
    }

    #[test]
    fn history_keeps_message_times_and_reads_untimed_documents() {
        let bob = jid("bob@example.org");
        let mut untimed = message(
            2,
            "before times",
            Direction::Incoming,
            DeliveryState::Received,
        );
        untimed.at = None;
        untimed.edited = true;
        untimed.edit_ids = vec!["c1".into(), "c2".into()];
        let mut gone = message(3, "", Direction::Incoming, DeliveryState::Received);
        gone.retracted = true;
        let timed = message(1, "hello", Direction::Outgoing, DeliveryState::Delivered);
        let doc = encode_history(&[(bob.clone(), vec![timed.clone(), untimed.clone(), gone])]);
        let back = decode_history(&doc).expect("decode");
        assert_eq!(back[0].1[0].at, timed.at);
        assert_eq!(back[0].1[1].at, None);
        assert!(!back[0].1[0].edited);
        assert_eq!(
            (back[0].1[1].edited, &back[0].1[1].edit_ids),
            (true, &untimed.edit_ids),
            "corrections are remembered"
        );
        assert!(back[0].1[2].retracted && !back[0].1[1].retracted);

        // A version 2 document, field by field as postcard lays out its structs.
        type Untimed = (Option<String>, bool, String, bool, String, Option<String>);
        let v2: (Vec<(String, Vec<Untimed>)>,) = (vec![(
            bob.to_string(),
            vec![(
                Some("id-1".into()),
                true,
                "from an earlier version".into(),
                true,
                "delivered".into(),
                None,
            )],
        )],);
        let doc = document::encode(HISTORY_VERSION_UNTIMED, &v2, 256);
        let back = decode_history(&doc).expect("a version 2 document is read");
        assert_eq!(back[0].0, bob);
        let m = &back[0].1[0];
        assert_eq!(
            (m.body.as_str(), m.direction, m.state, m.at),
            (
                "from an earlier version",
                Direction::Outgoing,
                DeliveryState::Delivered,
                None
            )
        );
        assert!(decode_history(&doc[..doc.len() - 1]).is_err(), "truncated");
    }

    #[test]
    fn roster_round_trip() {
        let items = vec![RosterItem {
            jid: jid("bob@example.org"),
            name: Some("Bob".into()),
            subscription: Subscription::Both,
            pending_out: false,
            groups: vec!["Friends".into()],
        }];
        let doc = encode_roster("v7", &items);
        let (version, back) = decode_roster(&doc).expect("decode");
        assert_eq!(version, "v7");
        assert_eq!(back, items);
    }
}
