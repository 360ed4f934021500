//! Looking at an account's OMEMO device list from outside, as a contact's client sees it: a
//! native session signs in as another account through the bridge and fetches the list from
//! PEP. Used by the browser suites to check that a kiosk device left the list.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use sotto_session::native::Client;
use sotto_session::omemo::xml;
use sotto_session::{BareJid, Config, Event};

/// `owner`'s OMEMO device ids, fetched by `viewer` (password `<viewer>-pass`, the fixture's
/// convention) through the WebSocket at `ws_url`. A missing node is an empty list.
pub async fn device_list(ws_url: &str, viewer: &str, owner: &BareJid) -> Result<Vec<u32>> {
    let config = Config {
        jid: format!("{viewer}@localhost").parse()?,
        password: zeroize::Zeroizing::new(format!("{viewer}-pass")),
        resource: Some("device-list-check".into()),
        allow_plain: false,
        service: None,
    };
    let mut client = Client::connect(ws_url, config, None).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let left = |deadline: tokio::time::Instant| {
        deadline.saturating_duration_since(tokio::time::Instant::now())
    };
    loop {
        match client.next_event_within(left(deadline)).await? {
            Event::Online { .. } => break,
            Event::LoginFailed(e) => bail!("{viewer} cannot sign in: {e:?}"),
            _ => {}
        }
    }
    let request = client.session().pep_fetch(owner, xml::DEVICE_LIST_NODE)?;
    client.flush().await?;
    let ids = loop {
        match client
            .next_event_within(left(deadline))
            .await
            .context("waiting for the device list")?
        {
            Event::PepItems {
                request: r, items, ..
            } if r == request => {
                break match items.iter().find_map(|i| i.payload.as_ref()) {
                    Some(list) => xml::parse_device_list(list)?,
                    None => Vec::new(),
                };
            }
            Event::RequestFailed {
                request: r,
                condition,
            } if r == request => {
                if condition == "item-not-found" {
                    break Vec::new();
                }
                bail!("fetching {owner}'s device list failed: {condition}");
            }
            _ => {}
        }
    };
    let _ = client.close().await;
    Ok(ids)
}
