//! Links in message texts: found, never followed by themselves.
//!
//! A message body is shown as text, never as HTML. `http://` and `https://` addresses in it
//! become links that do nothing until clicked (no preview is fetched, no image is loaded), and
//! what the link shows is its real target: the address exactly as it will be opened — the text
//! of a link cannot differ from where it goes, because message texts have no markup. A host
//! with non-ASCII characters (which can imitate another, `раураl.com`) is also shown in the
//! ASCII form the browser will actually look up (`xn--…`).

/// A piece of a message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Plain text.
    Text(&'a str),
    /// A web address.
    Link {
        /// The address as written (and opened).
        url: &'a str,
        /// The host in ASCII (punycode) when it differs from the written host.
        ascii_host: Option<String>,
    },
}

/// Characters that end a link when they are its last one (sentence punctuation).
const TRAILING: &[char] = &['.', ',', ';', ':', '!', '?', '\'', '"', ')', ']', '}', '>'];

/// Splits `text` into text and links.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = find_scheme(rest) {
        let (before, from) = rest.split_at(start);
        let end = from
            .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .unwrap_or(from.len());
        let mut candidate = &from[..end];
        // Trailing punctuation belongs to the sentence, except a ')' closing a '(' in the link.
        while let Some(last) = candidate.chars().last() {
            let balanced_paren =
                last == ')' && candidate.matches('(').count() >= candidate.matches(')').count();
            if TRAILING.contains(&last) && !balanced_paren {
                candidate = &candidate[..candidate.len() - last.len_utf8()];
            } else {
                break;
            }
        }
        let host = host_of(candidate);
        if host.is_empty() {
            // "https://" alone: not a link.
            let skip = start + scheme_len(from);
            push_text(&mut out, &rest[..skip]);
            rest = &rest[skip..];
            continue;
        }
        push_text(&mut out, before);
        out.push(Segment::Link {
            url: candidate,
            ascii_host: ascii_host(host),
        });
        rest = &from[candidate.len()..];
    }
    push_text(&mut out, rest);
    out
}

fn push_text<'a>(out: &mut Vec<Segment<'a>>, text: &'a str) {
    if text.is_empty() {
        return;
    }
    out.push(Segment::Text(text));
}

/// Where the next `http://` or `https://` (any case) starts, at a word boundary.
fn find_scheme(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    loop {
        let http = lower.get(from..)?.find("http")? + from;
        let tail = lower.get(http..)?;
        let boundary = lower
            .get(..http)
            .and_then(|b| b.chars().last())
            .is_none_or(|c| !c.is_alphanumeric());
        if boundary && (tail.starts_with("http://") || tail.starts_with("https://")) {
            return Some(http);
        }
        from = http + 4;
    }
}

fn scheme_len(link: &str) -> usize {
    if link.len() >= 8
        && link
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        8
    } else {
        7
    }
}

/// The host part of a link (without user info and port).
fn host_of(link: &str) -> &str {
    let after = link.get(scheme_len(link)..).unwrap_or("");
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if host_port.starts_with('[') {
        // An IPv6 literal: up to the closing bracket.
        return host_port
            .split(']')
            .next()
            .map_or("", |h| h.get(1..).unwrap_or(""));
    }
    host_port.split(':').next().unwrap_or("")
}

/// The ASCII form of a host that has non-ASCII characters: in the browser, the one its own URL
/// parser gives, which is the name it will look up.
fn ascii_host(host: &str) -> Option<String> {
    if host.is_ascii() {
        return None;
    }
    #[cfg(target_arch = "wasm32")]
    {
        web_sys::Url::new(&format!("https://{host}/"))
            .ok()
            .map(|url| url.hostname())
            .filter(|ascii| ascii.is_ascii())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        idna::domain_to_ascii(host).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(url: &str) -> Segment<'_> {
        Segment::Link {
            url,
            ascii_host: None,
        }
    }

    #[test]
    fn finds_links_in_text() {
        assert_eq!(
            segments("no links here"),
            vec![Segment::Text("no links here")]
        );
        assert_eq!(
            segments("see https://example.org/a?b=c#d, then"),
            vec![
                Segment::Text("see "),
                link("https://example.org/a?b=c#d"),
                Segment::Text(", then")
            ]
        );
        assert_eq!(
            segments("HTTP://Example.org."),
            vec![link("HTTP://Example.org"), Segment::Text(".")]
        );
        assert_eq!(
            segments("(wiki: https://en.wikipedia.org/wiki/Foo_(bar))"),
            vec![
                Segment::Text("(wiki: "),
                link("https://en.wikipedia.org/wiki/Foo_(bar)"),
                Segment::Text(")")
            ]
        );
        assert_eq!(
            segments("a http://x.org b https://y.org"),
            vec![
                Segment::Text("a "),
                link("http://x.org"),
                Segment::Text(" b "),
                link("https://y.org")
            ]
        );
    }

    #[test]
    fn ignores_non_links() {
        assert_eq!(segments("https://"), vec![Segment::Text("https://")]);
        assert_eq!(
            segments("xhttps://a.org"),
            vec![Segment::Text("xhttps://a.org")]
        );
        assert_eq!(
            segments("javascript:alert(1)"),
            vec![Segment::Text("javascript:alert(1)")]
        );
        assert_eq!(segments("http"), vec![Segment::Text("http")]);
        assert_eq!(segments(""), Vec::<Segment<'_>>::new());
    }

    #[test]
    fn shows_the_ascii_host_of_lookalikes() {
        // Cyrillic letters that look like "paypal".
        let segs = segments("pay at https://раураl.com/login now");
        let Segment::Link { url, ascii_host } = &segs[1] else {
            panic!("{segs:?}")
        };
        assert_eq!(*url, "https://раураl.com/login");
        let ascii = ascii_host.as_deref().expect("an ASCII form");
        assert!(
            ascii.starts_with("xn--") && ascii.ends_with(".com"),
            "{ascii}"
        );
        assert_eq!(host_of("https://user@host.org:8443/x"), "host.org");
        assert_eq!(host_of("http://[::1]:80/"), "::1");
    }
}
