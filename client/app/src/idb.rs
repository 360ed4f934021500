//! The browser's IndexedDB as a tiny key → bytes store, for personal ("my device") mode only.
//!
//! Every value that reaches it is already sealed by `sotto-vault` (or is the wrapped data key),
//! so this layer knows nothing about secrets: it is the storage driver, as the WebSocket is the
//! network driver. Public-computer mode never calls it — not even [`Db::open`], which creates
//! the database on disk.
//!
//! One database ([`DB_NAME`]), one object store ([`STORE`]) of `Uint8Array` values under string
//! keys. Each write is one transaction and resolves when the transaction is complete (the data
//! is committed); transactions on the same store run in the order they were created, so saves
//! land in the order they were made.

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransactionMode};

/// The database's name.
pub const DB_NAME: &str = "sotto";
/// Its one object store.
pub const STORE: &str = "records";
const DB_VERSION: u32 = 1;

/// Storage failed (no IndexedDB, quota, private browsing…). Carries no data, only what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub &'static str);

impl core::fmt::Display for StorageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

/// An open database.
#[derive(Clone)]
pub struct Db {
    db: IdbDatabase,
}

/// Resolves when `target`'s success (or `complete`) event fires; rejects on error (or abort).
async fn settle(
    set: impl FnOnce(&js_sys::Function, &js_sys::Function),
    what: &'static str,
) -> Result<JsValue, StorageError> {
    let mut set = Some(set);
    let promise = Promise::new(&mut |resolve, reject| {
        if let Some(set) = set.take() {
            set(&resolve, &reject);
        }
    });
    JsFuture::from(promise)
        .await
        .map_err(|_| StorageError(what))
}

async fn request(req: &IdbRequest, what: &'static str) -> Result<JsValue, StorageError> {
    settle(
        |ok, err| {
            req.set_onsuccess(Some(ok));
            req.set_onerror(Some(err));
        },
        what,
    )
    .await?;
    req.result().map_err(|_| StorageError(what))
}

impl Db {
    /// Opens (creating on first use) the database.
    pub async fn open() -> Result<Self, StorageError> {
        let factory = web_sys::window()
            .and_then(|w| w.indexed_db().ok().flatten())
            .ok_or(StorageError("this browser offers no IndexedDB storage"))?;
        let open = factory
            .open_with_u32(DB_NAME, DB_VERSION)
            .map_err(|_| StorageError("cannot open the browser's storage"))?;
        let upgrade_target = open.clone();
        let on_upgrade = Closure::once_into_js(move |_: web_sys::Event| {
            if let Ok(db) = upgrade_target
                .result()
                .and_then(|r| r.dyn_into::<IdbDatabase>())
            {
                if !db.object_store_names().contains(STORE) {
                    let _ = db.create_object_store(STORE);
                }
            }
        });
        open.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
        let db = request(&open, "cannot open the browser's storage").await?;
        open.set_onupgradeneeded(None);
        let db: IdbDatabase = db
            .dyn_into()
            .map_err(|_| StorageError("cannot open the browser's storage"))?;
        Ok(Self { db })
    }

    fn store(
        &self,
        mode: IdbTransactionMode,
    ) -> Result<(web_sys::IdbTransaction, IdbObjectStore), StorageError> {
        let tx = self
            .db
            .transaction_with_str_and_mode(STORE, mode)
            .map_err(|_| StorageError("the browser's storage refused a transaction"))?;
        let store = tx
            .object_store(STORE)
            .map_err(|_| StorageError("the browser's storage is damaged"))?;
        Ok((tx, store))
    }

    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let (_tx, store) = self.store(IdbTransactionMode::Readonly)?;
        let req = store
            .get(&JsValue::from_str(key))
            .map_err(|_| StorageError("cannot read the browser's storage"))?;
        let value = request(&req, "cannot read the browser's storage").await?;
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        let bytes: Uint8Array = value
            .dyn_into()
            .map_err(|_| StorageError("the browser's storage holds something unexpected"))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Writes every `(key, value)` in one transaction: all of them are stored, or none.
    pub async fn put_all(&self, records: &[(String, Vec<u8>)]) -> Result<(), StorageError> {
        let (tx, store) = self.store(IdbTransactionMode::Readwrite)?;
        for (key, value) in records {
            let value = Uint8Array::from(value.as_slice());
            store
                .put_with_key(&value, &JsValue::from_str(key))
                .map_err(|_| StorageError("cannot write the browser's storage"))?;
        }
        commit(&tx, "cannot write the browser's storage").await
    }

    /// Deletes every key that starts with `prefix`, in one transaction.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        let (tx, store) = self.store(IdbTransactionMode::Readwrite)?;
        // Keys are strings: everything from `prefix` up to `prefix` + the highest code point.
        let upper = format!("{prefix}\u{10FFFF}");
        let range = IdbKeyRange::bound(&JsValue::from_str(prefix), &JsValue::from_str(&upper))
            .map_err(|_| StorageError("cannot delete from the browser's storage"))?;
        store
            .delete(&range)
            .map_err(|_| StorageError("cannot delete from the browser's storage"))?;
        commit(&tx, "cannot delete from the browser's storage").await
    }
}

async fn commit(tx: &web_sys::IdbTransaction, what: &'static str) -> Result<(), StorageError> {
    settle(
        |ok, err| {
            tx.set_oncomplete(Some(ok));
            tx.set_onerror(Some(err));
            tx.set_onabort(Some(err));
        },
        what,
    )
    .await
    .map(|_| ())
}
