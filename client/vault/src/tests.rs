#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn new_vault() -> (Vault, WrappedKey) {
    Vault::create(b"pass phrase", KdfParams::MINIMUM, &mut rng(1)).unwrap()
}

#[test]
fn records_round_trip_after_unlock() {
    let (vault, wrapped) = new_vault();
    let sealed = vault
        .seal("roster", b"bob@example.org", &mut rng(2))
        .unwrap();
    let stored = wrapped.to_bytes();
    let reopened =
        Vault::unlock(b"pass phrase", &WrappedKey::from_bytes(&stored).unwrap()).unwrap();
    assert_eq!(
        &**reopened.open("roster", &sealed).unwrap(),
        b"bob@example.org"
    );
    assert_eq!(wrapped.params(), KdfParams::MINIMUM);
}

#[test]
fn wrong_passphrase_is_a_clear_error_and_destroys_nothing() {
    let (vault, wrapped) = new_vault();
    let sealed = vault.seal("history", b"hello", &mut rng(2)).unwrap();
    assert_eq!(
        Vault::unlock(b"pass phrasE", &wrapped).unwrap_err(),
        VaultError::WrongPassphrase
    );
    // The same stored bytes still open with the right one.
    let vault = Vault::unlock(b"pass phrase", &wrapped).unwrap();
    assert_eq!(&**vault.open("history", &sealed).unwrap(), b"hello");
}

#[test]
fn passphrase_change_rewraps_without_touching_records() {
    let (vault, _old) = new_vault();
    let sealed = vault.seal("omemo", b"identity", &mut rng(2)).unwrap();
    let new = vault
        .rewrap(b"new phrase", KdfParams::MINIMUM, &mut rng(3))
        .unwrap();
    assert_eq!(
        Vault::unlock(b"pass phrase", &new).unwrap_err(),
        VaultError::WrongPassphrase
    );
    let reopened = Vault::unlock(b"new phrase", &new).unwrap();
    assert_eq!(&**reopened.open("omemo", &sealed).unwrap(), b"identity");
}

#[test]
fn a_record_cannot_be_moved_to_another_name() {
    let (vault, _) = new_vault();
    let sealed = vault.seal("history/alice", b"secret", &mut rng(2)).unwrap();
    assert_eq!(
        vault.open("history/bob", &sealed).unwrap_err(),
        VaultError::Corrupt
    );
}

#[test]
fn every_flipped_bit_and_every_truncation_of_a_record_is_refused() {
    let (vault, _) = new_vault();
    let sealed = vault.seal("r", b"some plaintext", &mut rng(2)).unwrap();
    for i in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let err = vault.open("r", &bad).unwrap_err();
        assert!(
            matches!(err, VaultError::Corrupt | VaultError::UnknownFormat),
            "bit {i}: {err:?}"
        );
    }
    for len in 0..sealed.len() {
        assert!(vault.open("r", &sealed[..len]).is_err(), "length {len}");
    }
}

#[test]
fn records_from_another_vault_do_not_open() {
    let (a, _) = new_vault();
    let (b, _) = Vault::create(b"pass phrase", KdfParams::MINIMUM, &mut rng(9)).unwrap();
    let sealed = a.seal("r", b"x", &mut rng(2)).unwrap();
    assert_eq!(b.open("r", &sealed).unwrap_err(), VaultError::Corrupt);
}

#[test]
fn altered_wrapped_keys_are_refused() {
    let (_, wrapped) = new_vault();
    let stored = wrapped.to_bytes();
    // One byte in each field: magic, kdf id, memory, iterations, parallelism, salt, nonce,
    // ciphertext, tag.
    for at in [0, 4, 5, 9, 13, 17, 33, 57, stored.len() - 1] {
        let mut bad = stored.clone();
        bad[at] ^= 0x01;
        let result = WrappedKey::from_bytes(&bad).and_then(|w| Vault::unlock(b"pass phrase", &w));
        assert!(result.is_err(), "byte {at} altered yet unlocked");
    }
    for len in 0..stored.len() {
        assert!(
            WrappedKey::from_bytes(&stored[..len]).is_err(),
            "length {len}"
        );
    }
}

#[test]
fn stored_parameters_are_bounded_before_anything_is_allocated() {
    let (_, wrapped) = new_vault();
    let mut stored = wrapped.to_bytes();
    // memory_kib = u32::MAX: refused at decode, never handed to argon2.
    stored[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        WrappedKey::from_bytes(&stored).unwrap_err(),
        VaultError::BadParams("memory")
    );
    // A downgrade to a trivial KDF is refused too.
    let mut stored = wrapped.to_bytes();
    stored[5..9].copy_from_slice(&8u32.to_le_bytes());
    assert_eq!(
        WrappedKey::from_bytes(&stored).unwrap_err(),
        VaultError::BadParams("memory")
    );
    assert_eq!(
        Vault::create(
            b"p",
            KdfParams {
                iterations: 0,
                ..KdfParams::MINIMUM
            },
            &mut rng(1)
        )
        .unwrap_err(),
        VaultError::BadParams("iterations")
    );
}

#[test]
fn passphrase_box_binds_its_context() {
    let sealed = PassphraseBox::seal(
        b"pw",
        KdfParams::MINIMUM,
        b"kiosk devices",
        b"[1,2]",
        &mut rng(4),
    )
    .unwrap();
    let decoded = PassphraseBox::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(&**decoded.open(b"pw", b"kiosk devices").unwrap(), b"[1,2]");
    assert_eq!(
        decoded.open(b"pw", b"something else").unwrap_err(),
        VaultError::WrongPassphrase
    );
    assert!(PassphraseBox::seal(
        b"pw",
        KdfParams::MINIMUM,
        b"",
        &vec![0; MAX_BOX_BYTES + 1],
        &mut rng(4)
    )
    .is_err());
}

/// The stored formats are a compatibility promise: a store written today must open tomorrow.
/// These bytes were produced by this code with fixed randomness; if this test fails, the format
/// changed and needs a new version byte and a migration, not a new expected value.
#[test]
fn stored_format_is_stable() {
    let (vault, wrapped) = new_vault();
    let sealed = vault.seal("r", b"format", &mut rng(2)).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&sealed[..4]), "53565231"); // "SVR1"
                                               // "SVB1", Argon2id, 8192 KiB, 1 pass, 1 lane (little-endian).
    assert_eq!(
        hex(&wrapped.to_bytes()[..17]),
        "5356423101002000000100000001000000"
    );
    assert_eq!(
        wrapped.to_bytes().len(),
        BOX_HEADER_BYTES + KEY_BYTES + TAG_BYTES
    );
    assert_eq!(sealed.len(), 4 + NONCE_BYTES + b"format".len() + TAG_BYTES);
    // Decrypting a record written by an earlier build (fixed key, fixed bytes).
    let golden_key = Vault {
        data_key: Zeroizing::new([0x42; KEY_BYTES]),
    };
    let golden = golden_key.seal("golden", b"stable", &mut rng(5)).unwrap();
    assert_eq!(hex(&golden), GOLDEN_RECORD);
    assert_eq!(&**golden_key.open("golden", &golden).unwrap(), b"stable");
}

const GOLDEN_RECORD: &str = "535652318108aedfacf5cf1d73c67b6936397ba5fa72817f1b5aab9432988e13fd64f2195e24fdb6e7398ff93d3fd678491d";

#[test]
fn debug_never_prints_key_material() {
    let (vault, wrapped) = new_vault();
    assert_eq!(format!("{vault:?}"), "Vault { .. }");
    let shown = format!("{wrapped:?}");
    assert!(shown.contains("ciphertext_bytes"), "{shown}");
    assert!(!shown.contains("salt"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_record_round_trips(name in ".{0,40}", body in proptest::collection::vec(any::<u8>(), 0..2048), seed in any::<u8>()) {
        let vault = Vault { data_key: Zeroizing::new([seed; KEY_BYTES]) };
        let sealed = vault.seal(&name, &body, &mut rng(seed)).unwrap();
        prop_assert_eq!(&**vault.open(&name, &sealed).unwrap(), &body[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let vault = Vault { data_key: Zeroizing::new([1; KEY_BYTES]) };
        let _ = vault.open("r", &bytes);
        let _ = WrappedKey::from_bytes(&bytes);
        let _ = PassphraseBox::from_bytes(&bytes);
    }
}
