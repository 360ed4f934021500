//! Message styling (XEP-0393), as Conversations, Dino, Gajim and Converse.js show it:
//! `*strong*`, `_emphasis_`, `~strike~`, `` `code` ``, quotations (`> `) and preformatted blocks
//! (```` ``` ````). Parsed here into a small tree the view renders as elements, never as HTML:
//! the text stays text.
//!
//! Bounded for untrusted input: the work is linear in the text (each span's closing directive is
//! found by a binary search among the line's candidates), spans nest at most four deep (a style
//! cannot contain itself) and quotations at most [`MAX_QUOTE_DEPTH`] deep. Web addresses
//! (crate::links) are found first and are never split: a directive character inside one is
//! part of the address.

use crate::links::{segments, Segment};

/// Quotations nested deeper than this are shown as text (">>>>>>>>>…" is not a cause for
/// recursion).
pub const MAX_QUOTE_DEPTH: usize = 8;

/// A block of a message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block<'a> {
    /// A line and its spans.
    Line(Vec<Span<'a>>),
    /// Preformatted lines, shown as written in a monospace font (the fences are not shown).
    Pre(Vec<&'a str>),
    /// A quotation: blocks of their own.
    Quote(Vec<Block<'a>>),
}

/// A span of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span<'a> {
    /// Text without style (it may hold web addresses).
    Plain(&'a str),
    /// Text between two styling directives; the directives are shown too, in the same style,
    /// as XEP-0393 recommends.
    Styled(Style, Vec<Span<'a>>),
}

/// The four span styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `*strong*`.
    Strong,
    /// `_emphasis_`.
    Emphasis,
    /// `~strike through~`.
    Strike,
    /// `` `preformatted` ``: holds one plain span, never styled further.
    Code,
}

impl Style {
    const ALL: [Style; 4] = [Style::Strong, Style::Emphasis, Style::Strike, Style::Code];

    /// The directive character.
    pub fn directive(self) -> char {
        match self {
            Style::Strong => '*',
            Style::Emphasis => '_',
            Style::Strike => '~',
            Style::Code => '`',
        }
    }

    fn of(byte: u8) -> Option<Style> {
        Style::ALL
            .into_iter()
            .find(|s| s.directive() as u32 == u32::from(byte))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Whether `text` has anything to style: most messages do not, and are shown as they are.
pub fn has_styling(text: &str) -> bool {
    text.bytes()
        .any(|b| matches!(b, b'*' | b'_' | b'~' | b'`' | b'>'))
}

/// The blocks of a message text.
pub fn blocks(text: &str) -> Vec<Block<'_>> {
    let lines: Vec<&str> = text.split('\n').collect();
    blocks_of(&lines, 0)
}

fn blocks_of<'a>(lines: &[&'a str], depth: usize) -> Vec<Block<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("```") {
            // Up to a line of only the fence, or the end of the parent block.
            let end = lines[i + 1..]
                .iter()
                .position(|l| *l == "```")
                .map(|k| i + 1 + k);
            let content_end = end.unwrap_or(lines.len());
            out.push(Block::Pre(lines[i + 1..content_end].to_vec()));
            i = end.map_or(lines.len(), |e| e + 1);
        } else if line.starts_with('>') && depth < MAX_QUOTE_DEPTH {
            let count = lines[i..].iter().take_while(|l| l.starts_with('>')).count();
            let inner: Vec<&str> = lines[i..i + count]
                .iter()
                .map(|l| strip_quote_marker(l))
                .collect();
            out.push(Block::Quote(blocks_of(&inner, depth + 1)));
            i += count;
        } else {
            out.push(Block::Line(spans(line)));
            i += 1;
        }
    }
    out
}

/// A quoted line without its `>` and the first whitespace character after it.
fn strip_quote_marker(line: &str) -> &str {
    let rest = &line[1..];
    match rest.chars().next() {
        Some(c) if c.is_whitespace() => &rest[c.len_utf8()..],
        _ => rest,
    }
}

/// The spans of one line.
pub fn spans(line: &str) -> Vec<Span<'_>> {
    let links = link_ranges(line);
    let in_link = |at: usize| links.iter().any(|&(s, e)| s <= at && at < e);
    // Where each style's span may close: a directive not preceded by whitespace and not in an
    // address. Sorted, so an opening directive finds its (lazy, first) match by binary search.
    let mut closers: [Vec<usize>; 4] = Default::default();
    for (at, byte) in line.bytes().enumerate() {
        if let Some(style) = Style::of(byte) {
            let after_text = line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| !c.is_whitespace());
            if after_text && !in_link(at) {
                closers[style as usize].push(at);
            }
        }
    }
    let parser = SpanParser {
        line,
        closers,
        in_link: &in_link,
    };
    let mut out = Vec::new();
    parser.parse(0, line.len(), 0, &mut out);
    out
}

struct SpanParser<'a, 'f> {
    line: &'a str,
    closers: [Vec<usize>; 4],
    in_link: &'f dyn Fn(usize) -> bool,
}

impl<'a> SpanParser<'a, '_> {
    /// Parses `line[start..end]` into `out`; `active` are the styles of the spans around it.
    fn parse(&self, start: usize, end: usize, active: u8, out: &mut Vec<Span<'a>>) {
        let bytes = self.line.as_bytes();
        let mut plain_from = start;
        let mut at = start;
        while at < end {
            if let Some((style, close)) = self.span_at(at, start, end, active, bytes[at]) {
                if plain_from < at {
                    out.push(Span::Plain(&self.line[plain_from..at]));
                }
                let mut children = Vec::new();
                if style == Style::Code {
                    children.push(Span::Plain(&self.line[at + 1..close]));
                } else {
                    self.parse(at + 1, close, active | style.bit(), &mut children);
                }
                out.push(Span::Styled(style, children));
                at = close + 1;
                plain_from = at;
            } else {
                // Directives are ASCII: a byte step never lands one inside a character that
                // matters.
                at += 1;
            }
        }
        if plain_from < end {
            out.push(Span::Plain(&self.line[plain_from..end]));
        }
    }

    /// The span that opens at `at`, if one does: its style and where it closes.
    fn span_at(
        &self,
        at: usize,
        start: usize,
        end: usize,
        active: u8,
        byte: u8,
    ) -> Option<(Style, usize)> {
        let style = Style::of(byte)?;
        if active & style.bit() != 0 || (self.in_link)(at) {
            return None;
        }
        // Opens at the start of its block (or of the span around it) or after whitespace…
        let opens = at == start
            || self.line[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace);
        // …and is followed by text: not whitespace, not the same directive ("**" is no span).
        let next = self.line[at + 1..end].chars().next()?;
        if !opens || next.is_whitespace() || next == style.directive() {
            return None;
        }
        let closers = &self.closers[style as usize];
        let first = closers.partition_point(|&c| c < at + 2);
        closers
            .get(first)
            .copied()
            .filter(|&close| close < end)
            .map(|close| (style, close))
    }
}

/// Byte ranges of the web addresses in `line`.
fn link_ranges(line: &str) -> Vec<(usize, usize)> {
    if !line.contains("://") {
        return Vec::new();
    }
    let base = line.as_ptr() as usize;
    segments(line)
        .into_iter()
        .filter_map(|segment| match segment {
            Segment::Link { url, .. } => {
                let start = url.as_ptr() as usize - base;
                Some((start, start + url.len()))
            }
            Segment::Text(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strong(children: Vec<Span<'_>>) -> Span<'_> {
        Span::Styled(Style::Strong, children)
    }

    /// The line as written, from its spans: nothing is lost or moved.
    fn flatten(spans: &[Span<'_>]) -> String {
        spans
            .iter()
            .map(|s| match s {
                Span::Plain(t) => (*t).to_owned(),
                Span::Styled(style, children) => {
                    let d = style.directive();
                    format!("{d}{}{d}", flatten(children))
                }
            })
            .collect()
    }

    #[test]
    fn the_specifications_span_examples() {
        // XEP-0393 §5.2: styled as indicated.
        assert_eq!(spans("*strong*"), [strong(vec![Span::Plain("strong")])]);
        assert_eq!(
            spans("plain *strong* plain"),
            [
                Span::Plain("plain "),
                strong(vec![Span::Plain("strong")]),
                Span::Plain(" plain")
            ]
        );
        assert_eq!(
            spans("*strong* plain *strong*"),
            [
                strong(vec![Span::Plain("strong")]),
                Span::Plain(" plain "),
                strong(vec![Span::Plain("strong")])
            ]
        );
        assert_eq!(
            spans("*strong*plain*"),
            [strong(vec![Span::Plain("strong")]), Span::Plain("plain*")]
        );
        assert_eq!(
            spans("* plain *strong*"),
            [Span::Plain("* plain "), strong(vec![Span::Plain("strong")])]
        );
        // Nothing styled.
        for plain in [
            "not strong*",
            "*not strong",
            "*not *strong",
            "**",
            "****",
            "*",
            "",
        ] {
            assert!(
                spans(plain).iter().all(|s| matches!(s, Span::Plain(_))),
                "{plain:?}"
            );
        }
        // Spans do not escape their line.
        assert!(blocks("*not \n strong*").iter().all(|b| matches!(
            b,
            Block::Line(s) if s.iter().all(|s| matches!(s, Span::Plain(_)))
        )));
    }

    #[test]
    fn nesting_code_and_the_other_styles() {
        assert_eq!(
            spans("_emphasized span containing *strong span*_"),
            [Span::Styled(
                Style::Emphasis,
                vec![
                    Span::Plain("emphasized span containing "),
                    strong(vec![Span::Plain("strong span")])
                ]
            )]
        );
        assert_eq!(
            spans("This is `*monospace*`"),
            [
                Span::Plain("This is "),
                Span::Styled(Style::Code, vec![Span::Plain("*monospace*")])
            ]
        );
        assert_eq!(
            spans("*`monospace and bold`*"),
            [strong(vec![Span::Styled(
                Style::Code,
                vec![Span::Plain("monospace and bold")]
            )])]
        );
        assert_eq!(
            spans("Everyone ~dis~likes cake."),
            [
                Span::Plain("Everyone "),
                Span::Styled(Style::Strike, vec![Span::Plain("dis")]),
                Span::Plain("likes cake.")
            ]
        );
    }

    #[test]
    fn addresses_are_never_split() {
        for line in [
            "see https://example.org/_private_/x",
            "*see https://example.org/a*b* now",
            "https://example.org/~user/ and ~this~",
        ] {
            let parsed = spans(line);
            assert_eq!(flatten(&parsed), line);
            fn plains<'a>(spans: &[Span<'a>], out: &mut Vec<&'a str>) {
                for s in spans {
                    match s {
                        Span::Plain(t) => out.push(t),
                        Span::Styled(_, c) => plains(c, out),
                    }
                }
            }
            let mut texts = Vec::new();
            plains(&parsed, &mut texts);
            let links: Vec<&str> = texts
                .iter()
                .flat_map(|t| segments(t))
                .filter_map(|s| match s {
                    Segment::Link { url, .. } => Some(url),
                    Segment::Text(_) => None,
                })
                .collect();
            assert_eq!(links.len(), 1, "{line:?}: {parsed:?}");
        }
        assert_eq!(
            spans("https://example.org/~user/ and ~this~")[1],
            Span::Styled(Style::Strike, vec![Span::Plain("this")])
        );
    }

    #[test]
    fn the_specifications_block_examples() {
        assert_eq!(
            blocks("```ignored\n(println \"Hello, world!\")\n```\n\nThis should show up"),
            [
                Block::Pre(vec!["(println \"Hello, world!\")"]),
                Block::Line(vec![]),
                Block::Line(vec![Span::Plain("This should show up")])
            ]
        );
        // An unclosed fence ends with its quotation.
        assert_eq!(
            blocks("> ```\n> (println \"Hello, world!\")\n\nThe entire blockquote"),
            [
                Block::Quote(vec![Block::Pre(vec!["(println \"Hello, world!\")"])]),
                Block::Line(vec![]),
                Block::Line(vec![Span::Plain("The entire blockquote")])
            ]
        );
        assert_eq!(
            blocks(">> That that is, is.\n> Said the old hermit of Prague.\n\nWho?"),
            [
                Block::Quote(vec![
                    Block::Quote(vec![Block::Line(vec![Span::Plain("That that is, is.")])]),
                    Block::Line(vec![Span::Plain("Said the old hermit of Prague.")])
                ]),
                Block::Line(vec![]),
                Block::Line(vec![Span::Plain("Who?")])
            ]
        );
        // Only the first whitespace character after '>' goes.
        assert_eq!(
            blocks(">  indented"),
            [Block::Quote(vec![Block::Line(vec![Span::Plain(
                " indented"
            )])])]
        );
    }

    #[test]
    fn hostile_texts_stay_bounded() {
        let deep = ">".repeat(10_000) + " x";
        let mut depth = 0;
        let mut level = blocks(&deep);
        while let [Block::Quote(inner)] = level.as_slice() {
            depth += 1;
            level = inner.clone();
        }
        assert_eq!(depth, MAX_QUOTE_DEPTH);
        // Many openings without a closing one, and the reverse: linear, text kept whole.
        for line in [
            " *a".repeat(20_000),
            "a* ".repeat(20_000),
            "*_~`".repeat(10_000),
        ] {
            assert_eq!(flatten(&spans(&line)), line);
        }
    }

    #[test]
    fn any_line_comes_back_whole() {
        // A cheap exhaustive check over short lines of the interesting characters.
        let alphabet = ['*', '_', '~', '`', ' ', 'a', 'é'];
        let mut line = String::new();
        for n in 0..alphabet.len().pow(5) {
            line.clear();
            let mut k = n;
            for _ in 0..5 {
                line.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            assert_eq!(flatten(&spans(&line)), line);
        }
    }
}
