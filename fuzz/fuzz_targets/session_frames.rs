//! The session core fed untrusted WebSocket frames: before login, during SASL, and once online
//! (the state that sees every stanza from the network). It must never panic, and everything it
//! wants to send must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_session::{Config, Instant, Session};

/// A deterministic RNG: the fuzzer must be able to replay an input exactly.
struct FuzzRng(u64);

impl rand_core::RngCore for FuzzRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for FuzzRng {}

const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0'/>";
const FEATURES_PRE: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const FEATURES_POST: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>";

fn drain(session: &mut Session) -> Vec<String> {
    let mut sent = Vec::new();
    while let Some(frame) = session.poll_transmit() {
        sent.push(frame);
    }
    while session.poll_event().is_some() {}
    sent
}

/// The `id` attribute of the bind request among `sent`.
fn bind_id(sent: &[String]) -> Option<String> {
    let bind = sent.iter().find(|f| f.contains("xmpp-bind"))?;
    let start = bind.find(" id=")? + 5;
    let end = start + bind[start..].find(['\'', '"'])?;
    Some(bind[start..end].to_owned())
}

/// A session that logged in (PLAIN, allowed for the fuzzer only), bound and enabled XEP-0198.
fn online(session: &mut Session) {
    session.handle_connected(Instant::from_millis(0));
    drain(session);
    session.handle_frame(OPEN, Instant::from_millis(1));
    session.handle_frame(FEATURES_PRE, Instant::from_millis(1));
    drain(session);
    session.handle_frame(
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        Instant::from_millis(2),
    );
    drain(session);
    session.handle_frame(OPEN, Instant::from_millis(3));
    session.handle_frame(FEATURES_POST, Instant::from_millis(3));
    let sent = drain(session);
    let Some(id) = bind_id(&sent) else {
        panic!("no bind request after login: {sent:?}");
    };
    session.handle_frame(
        &format!("<iq xmlns='jabber:client' type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/fuzz</jid></bind></iq>"),
        Instant::from_millis(4),
    );
    session.handle_frame(
        "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>",
        Instant::from_millis(4),
    );
    drain(session);
    assert!(session.is_online(), "the scripted login did not bring the session online");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut session = Session::new(
        Config {
            jid: "alice@localhost".parse().unwrap(),
            password: zeroize::Zeroizing::new("secret".into()),
            resource: Some("fuzz".into()),
            allow_plain: true,
            service: None,
        },
        &mut FuzzRng(7),
    );
    if mode & 1 == 1 {
        online(&mut session);
    } else {
        session.handle_connected(Instant::from_millis(0));
    }
    // Frames are separated by NUL bytes (which XML cannot contain anyway).
    for (i, frame) in rest.split(|&b| b == 0).enumerate().take(64) {
        let now = Instant::from_millis(10 + i as u64 * 1000);
        session.handle_frame(&String::from_utf8_lossy(frame), now);
        if mode & 2 == 2 {
            if let Some(deadline) = session.poll_timeout() {
                session.handle_timeout(deadline);
            }
        }
        let sent = drain(&mut session);
        let bytes: usize = sent.iter().map(String::len).sum();
        assert!(bytes <= 64 * 1024 + 4 * frame.len(), "one frame made the session send {bytes} bytes");
    }
});
