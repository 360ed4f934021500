//! Temporary ("kiosk") OMEMO devices through the real bridge to a real Prosody: a temporary
//! device is recorded in the private PEP node before it is published, is reachable while it
//! lives, and leaves the device list (and loses its bundle node) at logout; one that dies
//! without logout is removed at the account's next login; the private node holds only an
//! opaque blob and other accounts cannot read it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sotto_session::native::{Client, DriverError};
use sotto_session::omemo::temporary::{
    KdfParams, Role, TemporaryDevices, TemporaryEvent, DEFAULT_RETIRE_TIMEOUT, NODE, NS,
};
use sotto_session::omemo::{xml, Omemo, OmemoEvent};
use sotto_session::{BareJid, Config, Event, Instant, RequestId};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::Prosody;
use sotto_tests::scan::{contains, files};

const STEP: Duration = Duration::from_secs(20);

fn jid(s: &str) -> BareJid {
    s.parse().unwrap()
}

#[derive(Debug)]
enum Out {
    Session(Event),
    Omemo(OmemoEvent),
    Kiosk(TemporaryEvent),
}

/// A native client with an OMEMO manager and (optionally) the temporary-device manager, in the
/// polling order of `sotto_session::omemo::temporary`.
struct Device {
    client: Client,
    omemo: Omemo,
    kiosk: Option<TemporaryDevices>,
    out: VecDeque<Out>,
    epoch: std::time::Instant,
}

impl Device {
    /// Logs in; `kiosk` gives the role and the password the record is sealed with.
    async fn login(
        bridge: &BridgeFixture,
        user: &str,
        resource: &str,
        kiosk: Option<(Role, &str)>,
    ) -> Result<Self> {
        let bare = jid(&format!("{user}@localhost"));
        let config = Config {
            jid: bare.clone(),
            password: zeroize::Zeroizing::new(format!("{user}-pass")),
            resource: Some(resource.to_owned()),
            allow_plain: false,
            service: None,
        };
        let mut omemo = Omemo::new(bare, &mut rand::rngs::OsRng);
        let kiosk = kiosk.map(|(role, password)| {
            TemporaryDevices::new(
                role,
                &mut omemo,
                password,
                KdfParams::MINIMUM,
                &mut rand::rngs::OsRng,
            )
        });
        let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
        omemo.attach(client.session());
        let mut this = Self {
            client,
            omemo,
            kiosk,
            out: VecDeque::new(),
            epoch: std::time::Instant::now(),
        };
        this.expect("online", |o| {
            matches!(o, Out::Session(Event::Online { .. })).then_some(())
        })
        .await?;
        Ok(this)
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    async fn next(&mut self, timeout: Duration) -> Result<Out> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(out) = self.out.pop_front() {
                return Ok(out);
            }
            // The kiosk manager's timer, besides the session's own.
            let mut wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            let kiosk_at = self.kiosk.as_ref().and_then(TemporaryDevices::poll_timeout);
            if let Some(at) = kiosk_at {
                wait = wait.min(Duration::from_millis(
                    at.as_millis().saturating_sub(self.now().as_millis()),
                ));
            }
            let event = match self.client.next_event_within(wait).await {
                Ok(event) => Some(event),
                Err(DriverError::Timeout) if kiosk_at.is_some() => None,
                Err(e) => return Err(e.into()),
            };
            let session = self.client.session();
            let event = match (self.kiosk.as_mut(), event) {
                (Some(kiosk), Some(e)) => kiosk.handle_event(session, &mut self.omemo, e),
                (_, event) => event,
            };
            if let Some(e) = event {
                if let Some(e) = self.omemo.handle_event(session, e) {
                    self.out.push_back(Out::Session(e));
                }
            }
            if let Some(kiosk) = self.kiosk.as_mut() {
                kiosk.handle_timeout(Instant::from_millis(self.epoch.elapsed().as_millis() as u64));
                while let Some(e) = kiosk.poll_event() {
                    self.out.push_back(Out::Kiosk(e));
                }
            }
            while let Some(e) = self.omemo.poll_event() {
                self.out.push_back(Out::Omemo(e));
            }
            self.client.flush().await?;
            if tokio::time::Instant::now() >= deadline && self.out.is_empty() {
                bail!("timed out");
            }
        }
    }

    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Out) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let out = self
                .next(left)
                .await
                .with_context(|| format!("waiting for {what}"))?;
            match &out {
                Out::Omemo(OmemoEvent::SendFailed { reason, .. }) => {
                    bail!("send failed while waiting for {what}: {reason}")
                }
                Out::Omemo(OmemoEvent::PublishFailed { condition }) => {
                    bail!("publishing failed while waiting for {what}: {condition}")
                }
                _ => {}
            }
            if let Some(found) = pick(&out) {
                return Ok(found);
            }
        }
    }

    /// Fetches `owner`'s PEP node: its items' payloads, or the error condition.
    async fn fetch(
        &mut self,
        owner: &str,
        node: &str,
    ) -> Result<std::result::Result<Vec<minidom::Element>, String>> {
        let request: RequestId = self.client.session().pep_fetch(&jid(owner), node)?;
        self.client.flush().await?;
        self.expect(&format!("{owner}'s {node}"), |o| match o {
            Out::Session(Event::PepItems {
                request: r, items, ..
            }) if *r == request => {
                Some(Ok(items.iter().filter_map(|i| i.payload.clone()).collect()))
            }
            Out::Session(Event::RequestFailed {
                request: r,
                condition,
            }) if *r == request => Some(Err(condition.clone())),
            _ => None,
        })
        .await
    }

    /// `owner`'s OMEMO device list as this device fetches it.
    async fn device_list(&mut self, owner: &str) -> Result<Vec<u32>> {
        match self.fetch(owner, xml::DEVICE_LIST_NODE).await? {
            Ok(payloads) => match payloads.first() {
                Some(list) => Ok(xml::parse_device_list(list)?),
                None => Ok(Vec::new()),
            },
            Err(condition) if condition == "item-not-found" => Ok(Vec::new()),
            Err(condition) => bail!("fetching the device list failed: {condition}"),
        }
    }

    async fn wait_published(&mut self) -> Result<()> {
        self.expect("device published", |o| {
            matches!(o, Out::Omemo(OmemoEvent::Published)).then_some(())
        })
        .await
    }

    async fn retire(&mut self) -> Result<TemporaryEvent> {
        let now = self.now();
        let kiosk = self.kiosk.as_mut().context("no kiosk manager")?;
        kiosk.retire(
            self.client.session(),
            &mut self.omemo,
            now,
            DEFAULT_RETIRE_TIMEOUT,
        );
        self.client.flush().await?;
        self.expect("retired", |o| match o {
            Out::Kiosk(e @ (TemporaryEvent::Retired | TemporaryEvent::RetireFailed { .. })) => {
                Some(e.clone())
            }
            _ => None,
        })
        .await
    }
}

/// The bytes of every file in Prosody's data directory that contains `needle`.
fn stored_with(prosody: &Prosody, needle: &str) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for path in files(prosody.data_dir())? {
        let bytes = std::fs::read(&path)?;
        if contains(&bytes, needle) {
            out.push((path, bytes));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_device_is_recorded_before_publishing_reachable_and_gone_after_logout(
) -> Result<()> {
    let prosody = Prosody::for_test("kiosk-retire", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;

    let mut bob = Device::login(&bridge, "bob", "phone", None).await?;
    bob.wait_published().await?;

    let mut kiosk = Device::login(
        &bridge,
        "alice",
        "kiosk",
        Some((Role::Temporary, "alice-pass")),
    )
    .await?;
    let temp = kiosk.omemo.device_id();
    // The record is written before anything is published.
    let mut recorded = false;
    kiosk
        .expect("recorded, then published", |o| match o {
            Out::Kiosk(TemporaryEvent::Recorded) => {
                recorded = true;
                None
            }
            Out::Kiosk(e @ TemporaryEvent::RecordFailed { .. }) => panic!("{e:?}"),
            Out::Omemo(OmemoEvent::Published) => Some(()),
            _ => None,
        })
        .await?;
    assert!(recorded, "published before the record was written");

    // bob sees the temporary device and can reach it.
    let list = bob.device_list("alice@localhost").await?;
    assert!(list.contains(&temp), "{list:?} lacks {temp}");
    let secret = "kiosk secret: meet at the library";
    bob.omemo
        .send_encrypted(bob.client.session(), &jid("alice@localhost"), secret)?;
    bob.client.flush().await?;
    let devices = bob
        .expect("sent", |o| match o {
            Out::Omemo(OmemoEvent::Sent { devices, .. }) => Some(*devices),
            _ => None,
        })
        .await?;
    assert_eq!(devices, 1, "encrypted to the temporary device");
    let (body, from_device) = kiosk
        .expect("bob's message", |o| match o {
            Out::Omemo(OmemoEvent::Message {
                message, device, ..
            }) => Some((message.body.clone().unwrap_or_default(), *device)),
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, .. }) => {
                panic!("decryption failed: {reason}")
            }
            _ => None,
        })
        .await?;
    assert_eq!(body, secret);
    assert_eq!(from_device, bob.omemo.device_id());

    // The private node is not readable by bob.
    match bob.fetch("alice@localhost", NODE).await? {
        Ok(items) => panic!("bob read alice's private node: {items:?}"),
        Err(condition) => assert!(
            [
                "forbidden",
                "not-authorized",
                "item-not-found",
                "not-allowed"
            ]
            .contains(&condition.as_str()),
            "{condition}"
        ),
    }

    // What Prosody stores of the private node is an opaque blob: no device id, no password.
    // (Positive control: the device list's file does contain the id in the clear.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id_text = temp.to_string();
    let with_list = stored_with(&prosody, xml::DEVICE_LIST_NODE)?;
    assert!(
        with_list.iter().any(|(_, b)| contains(b, &id_text)),
        "the scan should find the device id in the device list's storage"
    );
    let records = stored_with(&prosody, NS)?;
    assert!(!records.is_empty(), "no stored file holds the private node");
    for (path, bytes) in &records {
        // Only the file(s) of the record itself: its items, not other nodes' data.
        if contains(bytes, xml::DEVICE_LIST_NODE) || contains(bytes, "bundles:") {
            continue;
        }
        assert!(!contains(bytes, &id_text), "{path:?} holds {id_text}");
        assert!(
            !contains(bytes, "alice-pass"),
            "{path:?} holds the password"
        );
    }
    let record_files: Vec<_> = records
        .iter()
        .filter(|(_, b)| !contains(b, xml::DEVICE_LIST_NODE) && !contains(b, "bundles:"))
        .collect();
    assert!(
        !record_files.is_empty(),
        "the record's items should be stored on their own: {:?}",
        records.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (_, bytes) in files(prosody.data_dir())?
        .into_iter()
        .map(|p| std::fs::read(&p).map(|b| (p, b)))
        .collect::<std::io::Result<Vec<_>>>()?
    {
        assert!(!contains(&bytes, "alice-pass"), "the password is stored");
    }

    // Logout: the device retires itself.
    let outcome = kiosk.retire().await?;
    assert_eq!(outcome, TemporaryEvent::Retired);
    assert!(kiosk.omemo.is_retired());
    kiosk.client.close().await?;

    let list = bob.device_list("alice@localhost").await?;
    assert!(!list.contains(&temp), "{list:?} still has {temp}");
    // The bundle node was open to all: bob now gets an error (Prosody answers `forbidden`
    // for a node that does not exist and that he has no presence subscription for).
    if let Ok(items) = bob
        .fetch("alice@localhost", &xml::bundle_node(temp))
        .await?
    {
        panic!("the bundle node is still there: {items:?}");
    }

    // The next login finds nothing to clean up (the record no longer lists the device).
    let mut laptop = Device::login(
        &bridge,
        "alice",
        "laptop",
        Some((Role::Permanent, "alice-pass")),
    )
    .await?;
    laptop
        .expect("ready without clean-up", |o| match o {
            Out::Kiosk(TemporaryEvent::Ready) => Some(()),
            Out::Kiosk(e) => panic!("unexpected {e:?}"),
            _ => None,
        })
        .await?;
    laptop.wait_published().await?;
    // Its owner is told plainly that the bundle node does not exist.
    match laptop
        .fetch("alice@localhost", &xml::bundle_node(temp))
        .await?
    {
        Ok(items) => panic!("the bundle node is still there: {items:?}"),
        Err(condition) => assert_eq!(condition, "item-not-found"),
    }

    laptop.client.close().await?;
    bob.client.close().await?;
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_temporary_device_is_removed_at_the_next_login() -> Result<()> {
    let prosody = Prosody::for_test("kiosk-killed", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut bob = Device::login(&bridge, "bob", "phone", None).await?;
    bob.wait_published().await?;

    // A temporary device dies without logging out.
    let mut kiosk1 = Device::login(
        &bridge,
        "alice",
        "kiosk1",
        Some((Role::Temporary, "alice-pass")),
    )
    .await?;
    kiosk1.wait_published().await?;
    let dead1 = kiosk1.omemo.device_id();
    kiosk1.client.drop_connection();
    drop(kiosk1);
    let list = bob.device_list("alice@localhost").await?;
    assert!(list.contains(&dead1), "{list:?} lacks {dead1}");

    // A login with another password than the record's (as after a password change) cannot
    // identify it: it says so and leaves it.
    let mut other = Device::login(
        &bridge,
        "alice",
        "elsewhere",
        Some((Role::Permanent, "a-newer-password")),
    )
    .await?;
    other
        .expect("record unreadable", |o| match o {
            Out::Kiosk(TemporaryEvent::RecordUnreadable) => Some(()),
            Out::Kiosk(e) => panic!("{e:?} before reporting the record"),
            _ => None,
        })
        .await?;
    other.wait_published().await?;
    let other_id = other.omemo.device_id();
    other.client.close().await?;
    let list = bob.device_list("alice@localhost").await?;
    assert!(
        list.contains(&dead1),
        "{list:?} lost {dead1} without the password"
    );

    // The next temporary device cleans up after the first, then dies as well.
    let mut kiosk2 = Device::login(
        &bridge,
        "alice",
        "kiosk2",
        Some((Role::Temporary, "alice-pass")),
    )
    .await?;
    let cleaned = kiosk2
        .expect("clean-up by the next temporary device", |o| match o {
            Out::Kiosk(TemporaryEvent::CleanedUp { devices }) => Some(devices.clone()),
            Out::Kiosk(e) => panic!("{e:?} before the clean-up"),
            _ => None,
        })
        .await?;
    assert_eq!(cleaned, vec![dead1]);
    kiosk2
        .expect("recorded", |o| match o {
            Out::Kiosk(TemporaryEvent::Recorded) => Some(()),
            Out::Kiosk(e) => panic!("{e:?}"),
            _ => None,
        })
        .await?;
    kiosk2.wait_published().await?;
    let dead2 = kiosk2.omemo.device_id();
    kiosk2.client.drop_connection();
    drop(kiosk2);
    let list = bob.device_list("alice@localhost").await?;
    assert!(!list.contains(&dead1), "{list:?} still has {dead1}");
    assert!(list.contains(&dead2), "{list:?} lacks {dead2}");

    // alice's own laptop (a permanent device) logs in: the second dead device goes too.
    let mut laptop = Device::login(
        &bridge,
        "alice",
        "laptop",
        Some((Role::Permanent, "alice-pass")),
    )
    .await?;
    let cleaned = laptop
        .expect("clean-up", |o| match o {
            Out::Kiosk(TemporaryEvent::CleanedUp { devices }) => Some(devices.clone()),
            Out::Kiosk(e) => panic!("{e:?} before the clean-up"),
            _ => None,
        })
        .await?;
    assert_eq!(cleaned, vec![dead2]);
    laptop.wait_published().await?;

    let list = bob.device_list("alice@localhost").await?;
    for id in [dead1, dead2] {
        assert!(!list.contains(&id), "{list:?} still has {id}");
        if let Ok(items) = bob.fetch("alice@localhost", &xml::bundle_node(id)).await? {
            panic!("the bundle of {id} is still there: {items:?}");
        }
        match laptop
            .fetch("alice@localhost", &xml::bundle_node(id))
            .await?
        {
            Ok(items) => panic!("the bundle of {id} is still there: {items:?}"),
            Err(condition) => assert_eq!(condition, "item-not-found"),
        }
    }
    assert!(list.contains(&laptop.omemo.device_id()), "{list:?}");
    assert!(list.contains(&other_id), "{list:?}");

    // bob's messages now go to alice's live devices only.
    bob.omemo
        .refresh_devices(bob.client.session(), &jid("alice@localhost"));
    bob.client.flush().await?;
    bob.expect("alice's list", |o| match o {
        Out::Omemo(OmemoEvent::DeviceList { jid: j, devices }) if *j == jid("alice@localhost") => {
            Some(devices.clone())
        }
        _ => None,
    })
    .await?;
    bob.omemo.send_encrypted(
        bob.client.session(),
        &jid("alice@localhost"),
        "after the clean-up",
    )?;
    bob.client.flush().await?;
    let devices = bob
        .expect("sent", |o| match o {
            Out::Omemo(OmemoEvent::Sent { devices, .. }) => Some(*devices),
            _ => None,
        })
        .await?;
    assert_eq!(
        devices, 2,
        "encrypted to the laptop and the other device only"
    );
    let (body, _) = laptop
        .expect("bob's message", |o| match o {
            Out::Omemo(OmemoEvent::Message {
                message, device, ..
            }) => Some((message.body.clone().unwrap_or_default(), *device)),
            _ => None,
        })
        .await?;
    assert_eq!(body, "after the clean-up");

    laptop.client.close().await?;
    bob.client.close().await?;
    bridge.stop().await?;
    Ok(())
}
