//! Saving and restoring an OMEMO device: one versioned document that holds everything a device
//! must keep across runs — its id, its [`Account`] pickle (identity and prekeys) and every known
//! device with its identity key, our trust in it and our ratchet session with it. Device lists
//! are not kept: they are fetched afresh after login.
//!
//! The document holds every private key of the device and every session secret. The caller
//! encrypts it before it touches storage (the web app seals it with `sotto-vault`; the CLI keeps
//! it in a 0600 file in a 0700 directory).
//!
//! The encoding is [postcard](https://postcard.jamesmunns.com/wire-format) (compact binary:
//! about a third of the JSON it replaced, and the web app needs no JSON parser for it) after
//! one byte that names the format version:
//!
//! - `2`: postcard of `{jid, device_id, account, devices}`;
//! - `{`: version 1, JSON — what the CLI wrote before. Native builds still read it, so CLI
//!   stores keep working (and are rewritten as version 2 at the next save); the web app, which
//!   only ever stored version 1 in pre-release builds, reports it as a format it cannot read.

use crate::jid::BareJid;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sotto_omemo::account::{Account, AccountPickle};
use sotto_omemo::session::{PickleError, SessionPickle};
use zeroize::Zeroizing;

use super::{ImportError, Omemo, StoredDevice, Trust, MAX_TRUST_RECORDS};
use crate::document::{self, DocumentError};

/// The version [`Omemo::save`] writes (its first byte).
pub const STATE_VERSION: u8 = 2;

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
    /// Written as JSON by an earlier version, which this build does not read (the web app).
    #[error(
        "the saved OMEMO state comes from an earlier version of Sotto and cannot be read here"
    )]
    OldFormat,
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
    jid: String,
    device_id: u32,
    account: AccountPickle,
    devices: Vec<Device>,
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
        let estimate = 16 * 1024 + devices.len().saturating_mul(4 * 1024);
        let state = State {
            jid: self.own.to_string(),
            device_id: self.device_id,
            account: self.account.pickle(),
            devices,
        };
        document::encode(STATE_VERSION, &state, estimate)
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
        let state = decode(saved)?;
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

fn decode(saved: &[u8]) -> Result<State, RestoreError> {
    match document::decode(STATE_VERSION, saved) {
        Ok(state) => Ok(state),
        Err(DocumentError::Earlier) => decode_json(saved),
        Err(DocumentError::Newer(version)) => Err(RestoreError::UnsupportedVersion(version.into())),
        Err(e) => Err(RestoreError::Malformed(e.describe().into())),
    }
}

/// Version 1: the CLI's JSON, `{"version":1,"jid":…,"device_id":…,"account":…,"devices":[…]}`
/// (`version` absent in the oldest stores).
#[cfg(not(target_arch = "wasm32"))]
fn decode_json(saved: &[u8]) -> Result<State, RestoreError> {
    #[derive(Deserialize)]
    struct StateV1 {
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
    let state: StateV1 = serde_json::from_slice(saved).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected content",
            serde_json::error::Category::Eof => "truncated",
        };
        RestoreError::Malformed(format!("{kind} at line {} column {}", e.line(), e.column()))
    })?;
    if state.version != 1 {
        return Err(RestoreError::UnsupportedVersion(state.version));
    }
    Ok(State {
        jid: state.jid,
        device_id: state.device_id,
        account: state.account,
        devices: state.devices,
    })
}

/// The web app never reads JSON (see the module documentation).
#[cfg(target_arch = "wasm32")]
fn decode_json(_saved: &[u8]) -> Result<State, RestoreError> {
    Err(RestoreError::OldFormat)
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
        assert_eq!(saved[0], STATE_VERSION);
        assert_eq!(
            Omemo::restore(jid("mallory@example.org"), &saved, &mut rng).err(),
            Some(RestoreError::OtherAccount)
        );
        for garbage in [
            &b""[..],
            b"\x02",
            b"\x02\xff\xff\xff\xff\xff\xff",
            b"hello",
            b"{\"jid\":",
        ] {
            assert!(
                matches!(
                    Omemo::restore(jid("alice@example.org"), garbage, &mut rng).err(),
                    Some(RestoreError::Malformed(_))
                ),
                "{garbage:?}"
            );
        }
        for cut in [1, saved.len() / 2, saved.len() - 1] {
            assert!(matches!(
                Omemo::restore(jid("alice@example.org"), &saved[..cut], &mut rng).err(),
                Some(RestoreError::Malformed(_))
            ));
        }
        let mut longer = saved.to_vec();
        longer.push(0);
        assert!(matches!(
            Omemo::restore(jid("alice@example.org"), &longer, &mut rng).err(),
            Some(RestoreError::Malformed(_))
        ));
        let mut future = saved.to_vec();
        future[0] = 3;
        assert_eq!(
            Omemo::restore(jid("alice@example.org"), &future, &mut rng).err(),
            Some(RestoreError::UnsupportedVersion(3))
        );
    }

    /// CLI stores of version 1 (JSON) still load, with or without their version field, and are
    /// written back as version 2.
    #[test]
    fn reads_version_1_json() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let alice = Omemo::new(jid("alice@example.org"), &mut rng);
        let document = |version: Option<u32>| {
            let mut v1 = serde_json::json!({
                "jid": "alice@example.org",
                "device_id": alice.device_id(),
                "account": alice.account().pickle(),
                "devices": [],
            });
            if let Some(version) = version {
                v1["version"] = version.into();
            }
            v1.to_string()
        };
        let restored = Omemo::restore(
            jid("alice@example.org"),
            document(Some(1)).as_bytes(),
            &mut rng,
        )
        .expect("version 1");
        assert_eq!(restored.fingerprint(), alice.fingerprint());
        assert_eq!(*restored.save(), *alice.save());
        assert!(Omemo::restore(
            jid("alice@example.org"),
            document(None).as_bytes(),
            &mut rng
        )
        .is_ok());
        assert_eq!(
            Omemo::restore(
                jid("alice@example.org"),
                document(Some(99)).as_bytes(),
                &mut rng
            )
            .err(),
            Some(RestoreError::UnsupportedVersion(99))
        );
    }

    #[test]
    fn error_messages_never_quote_the_input() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        for input in [
            &b"{\"jid\":\"secret-text-here\",\"device_id\":\"x\"}"[..],
            b"\x02\x10secret-text-here",
        ] {
            let err = Omemo::restore(jid("alice@example.org"), input, &mut rng).expect_err("error");
            assert!(!err.to_string().contains("secret-text-here"), "{err}");
        }
    }
}
