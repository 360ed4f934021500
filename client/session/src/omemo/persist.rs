//! Saving and restoring an OMEMO device: one versioned document that holds everything a device
//! must keep across runs — its id, its [`Account`] pickle (identity and prekeys) and every known
//! device with its identity key, our trust in it and our ratchet session with it. Device lists
//! are not kept: they are fetched afresh after login.
//!
//! The document holds every private key of the device and every session secret. The caller
//! encrypts it before it touches storage (the web app seals it with `sotto-vault`; the CLI keeps
//! it in a 0600 file in a 0700 directory).
//!
//! The encoding is JSON (`serde_json`, already in the web app's dependency tree, and readable
//! by a person debugging their own CLI store). Version 1 is the CLI's original layout, so stores
//! written before this module existed load unchanged:
//!
//! ```json
//! {"version":1,"jid":"alice@example.org","device_id":123,"account":{…},
//!  "devices":[{"jid":"bob@example.org","device":456,"identity":[5,…],"trust":"blind",
//!              "session":{…}}]}
//! ```

use crate::jid::BareJid;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sotto_omemo::account::{Account, AccountPickle};
use sotto_omemo::session::{PickleError, SessionPickle};
use zeroize::Zeroizing;

use super::{ImportError, Omemo, StoredDevice, Trust, MAX_TRUST_RECORDS};

/// The version [`Omemo::save`] writes.
pub const STATE_VERSION: u32 = 1;

/// The largest document [`Omemo::restore`] parses (every cache full: 4096 sessions of a few
/// KiB each). Anything larger is refused before parsing.
pub const MAX_STATE_BYTES: usize = 32 * 1024 * 1024;

/// Why a saved device could not be restored. Nothing is changed by a failed restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The document is larger than [`MAX_STATE_BYTES`].
    #[error("the saved OMEMO state is too large")]
    TooLarge,
    /// The document is not a saved OMEMO state (or is damaged).
    #[error("the saved OMEMO state is damaged ({0})")]
    Malformed(String),
    /// Written by a newer version of Sotto.
    #[error("the saved OMEMO state has version {0}, newer than this program understands")]
    UnsupportedVersion(u32),
    /// It belongs to another account.
    #[error("the saved OMEMO state belongs to another account")]
    OtherAccount,
    /// The account pickle is unusable.
    #[error("the saved OMEMO identity is unusable: {0}")]
    Account(PickleError),
    /// A known device could not be restored.
    #[error("a saved OMEMO device is unusable: {0}")]
    Device(ImportError),
}

#[derive(Serialize, Deserialize)]
struct State {
    /// Absent in stores written before the field existed: version 1.
    #[serde(default = "first_version")]
    version: u32,
    jid: String,
    device_id: u32,
    account: AccountPickle,
    devices: Vec<Device>,
}

fn first_version() -> u32 {
    1
}

#[derive(Serialize, Deserialize)]
struct Device {
    jid: String,
    device: u32,
    identity: Vec<u8>,
    trust: TrustName,
    session: Option<SessionPickle>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum TrustName {
    Blind,
    Verified,
    Undecided,
    Distrusted,
}

impl From<Trust> for TrustName {
    fn from(trust: Trust) -> Self {
        match trust {
            Trust::Blind => Self::Blind,
            Trust::Verified => Self::Verified,
            Trust::Undecided => Self::Undecided,
            Trust::Distrusted => Self::Distrusted,
        }
    }
}

impl From<TrustName> for Trust {
    fn from(trust: TrustName) -> Self {
        match trust {
            TrustName::Blind => Self::Blind,
            TrustName::Verified => Self::Verified,
            TrustName::Undecided => Self::Undecided,
            TrustName::Distrusted => Self::Distrusted,
        }
    }
}

impl Omemo {
    /// This device's state as one document (see the module documentation). It holds secrets:
    /// encrypt it before storing. The buffer is zeroized on drop (copies left behind by the
    /// encoder's growth are avoided by reserving a generous capacity up front).
    pub fn save(&self) -> Zeroizing<Vec<u8>> {
        let devices: Vec<Device> = self
            .export_devices()
            .into_iter()
            .map(|d| Device {
                jid: d.jid.to_string(),
                device: d.device,
                identity: d.identity.to_vec(),
                trust: d.trust.into(),
                session: d.session,
            })
            .collect();
        let estimate = 64 * 1024 + devices.len().saturating_mul(16 * 1024);
        let state = State {
            version: STATE_VERSION,
            jid: self.own.to_string(),
            device_id: self.device_id,
            account: self.account.pickle(),
            devices,
        };
        let mut out = Zeroizing::new(Vec::with_capacity(estimate));
        // Serialising plain data into a Vec cannot fail; an empty document would fail to
        // restore, which is the safe outcome should it ever happen.
        if serde_json::to_writer(&mut *out, &state).is_err() {
            out.clear();
        }
        out
    }

    /// Restores the device [`Omemo::save`] saved for `own`. The manager starts unpublished
    /// and disconnected, exactly like [`Omemo::with_account`].
    pub fn restore(
        own: BareJid,
        saved: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, RestoreError> {
        if saved.len() > MAX_STATE_BYTES {
            return Err(RestoreError::TooLarge);
        }
        let state: State = serde_json::from_slice(saved)
            .map_err(|e| RestoreError::Malformed(e.classify_name()))?;
        if state.version > STATE_VERSION {
            return Err(RestoreError::UnsupportedVersion(state.version));
        }
        if state.jid != own.to_string() {
            return Err(RestoreError::OtherAccount);
        }
        if state.device_id == 0 || state.device_id > 0x7FFF_FFFF {
            return Err(RestoreError::Malformed("device id".into()));
        }
        if state.devices.len() > MAX_TRUST_RECORDS {
            return Err(RestoreError::Device(ImportError::Full));
        }
        let account = Account::from_pickle(&state.account).map_err(RestoreError::Account)?;
        let mut omemo = Self::with_account(own, state.device_id, account, rng);
        for device in &state.devices {
            let jid: BareJid = device
                .jid
                .parse()
                .map_err(|_| RestoreError::Malformed("device jid".into()))?;
            let identity: [u8; 33] = device
                .identity
                .as_slice()
                .try_into()
                .map_err(|_| RestoreError::Malformed("identity key length".into()))?;
            omemo
                .import_device(&StoredDevice {
                    jid,
                    device: device.device,
                    identity,
                    trust: device.trust.into(),
                    session: device.session.clone(),
                })
                .map_err(RestoreError::Device)?;
        }
        Ok(omemo)
    }
}

/// A short, content-free name for a JSON error (its position and kind, never the input).
trait Classify {
    fn classify_name(&self) -> String;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected content",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn jid(s: &str) -> BareJid {
        s.parse().expect("jid")
    }

    #[test]
    fn round_trip_keeps_identity_and_devices() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let mut alice = Omemo::new(jid("alice@example.org"), &mut rng);
        let bob = Omemo::new(jid("bob@example.org"), &mut rng);
        let bob_identity = bob.account().identity_key().to_bytes();
        alice
            .import_device(&StoredDevice {
                jid: jid("bob@example.org"),
                device: bob.device_id(),
                identity: bob_identity,
                trust: Trust::Verified,
                session: None,
            })
            .expect("import");
        let saved = alice.save();
        let again = Omemo::restore(jid("alice@example.org"), &saved, &mut rng).expect("restore");
        assert_eq!(again.device_id(), alice.device_id());
        assert_eq!(again.fingerprint(), alice.fingerprint());
        let devices = again.devices(&jid("bob@example.org"));
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].trust, Some(Trust::Verified));
        // Saving again gives the same document: nothing was lost or invented.
        assert_eq!(*again.save(), *saved);
    }

    #[test]
    fn refuses_other_account_garbage_and_future_versions() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let alice = Omemo::new(jid("alice@example.org"), &mut rng);
        let saved = alice.save();
        assert_eq!(
            Omemo::restore(jid("mallory@example.org"), &saved, &mut rng).err(),
            Some(RestoreError::OtherAccount)
        );
        assert!(matches!(
            Omemo::restore(jid("alice@example.org"), b"{\"jid\":", &mut rng).err(),
            Some(RestoreError::Malformed(_))
        ));
        let truncated = &saved[..saved.len() / 2];
        assert!(matches!(
            Omemo::restore(jid("alice@example.org"), truncated, &mut rng).err(),
            Some(RestoreError::Malformed(_))
        ));
        let text = String::from_utf8(saved.to_vec()).expect("utf-8");
        let future = text.replacen("\"version\":1", "\"version\":99", 1);
        assert_eq!(
            Omemo::restore(jid("alice@example.org"), future.as_bytes(), &mut rng).err(),
            Some(RestoreError::UnsupportedVersion(99))
        );
        // Stores written before the version field existed are version 1.
        let old = text.replacen("\"version\":1,", "", 1);
        assert!(Omemo::restore(jid("alice@example.org"), old.as_bytes(), &mut rng).is_ok());
    }

    #[test]
    fn error_messages_never_quote_the_input() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let err = Omemo::restore(
            jid("alice@example.org"),
            b"{\"jid\":\"secret-text-here\",\"device_id\":\"x\"}",
            &mut rng,
        )
        .expect_err("error");
        assert!(!err.to_string().contains("secret-text-here"), "{err}");
    }
}
