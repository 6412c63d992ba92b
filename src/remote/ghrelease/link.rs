//! RFC 8288 `Link` header parsing, as GitHub uses it for pagination.
//!
//! GitHub's pagination contract is: follow the `rel="next"` URL until there is none; never build
//! page URLs yourself (GitHub's URLs may switch to `/repositories/{id}` or cursor parameters).

/// The target of the link with relation `rel` (for example `"next"`), if the header has one.
///
/// Parses the header as RFC 8288 says: link-values separated by commas, each `<target>` followed
/// by `; name=value` parameters whose values are tokens or quoted strings (a quoted string is a
/// value, never a parameter, so `title="a; rel=next"` names no relation). Accepts GitHub's form
/// `<https://…?page=2>; rel="next", <…>; rel="last"`, unquoted `rel=next`, extra parameters and
/// several space-separated relations in one `rel`; only the first `rel` of a link counts. A
/// malformed link-value is skipped up to the next comma rather than guessed at, and a target that
/// is empty or contains whitespace is no link. The returned URL is a slice of `header`.
pub fn find_rel(header: &str, rel: &str) -> Option<String> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    while p.i < p.s.len() {
        if let Some((target, rels)) = p.link_value() {
            let target = header[target.0..target.1].trim();
            let usable = !target.is_empty() && !target.contains(char::is_whitespace);
            let named = rels.is_some_and(|(a, b)| {
                unescape(&header[a..b])
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
            });
            if usable && named {
                return Some(target.to_string());
            }
        } else {
            p.skip_past_comma();
        }
    }
    None
}

/// A quoted string's content with its quoted-pairs (`\x`) resolved (RFC 9110 5.6.4); a token,
/// which has no backslash, is returned as it is.
fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out.into()
}

/// A byte cursor over the header (every delimiter is ASCII, so slices stay on char boundaries).
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// A `(start, end)` byte range of the header.
type Span = (usize, usize);

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// One link-value from here: the target's span and the first `rel` value's span. `None` when
    /// it is malformed; then the cursor is somewhere inside it.
    fn link_value(&mut self) -> Option<(Span, Option<Span>)> {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
        if self.peek().is_none() {
            return Some(((0, 0), None));
        }
        if self.peek() != Some(b'<') {
            return None;
        }
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&b| b == b'>')?;
        self.i = start + len + 1;
        let target = (start, start + len);
        let mut rel = None;
        loop {
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.i += 1;
                    break;
                }
                Some(b';') => self.i += 1,
                Some(_) => return None,
            }
            self.skip_ws();
            let name = self.token()?;
            self.skip_ws();
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.skip_ws();
                Some(if self.peek() == Some(b'"') {
                    self.quoted()?
                } else {
                    self.token()?
                })
            } else {
                None
            };
            let is_rel = self.s[name.0..name.1].eq_ignore_ascii_case(b"rel");
            if is_rel && rel.is_none() {
                rel = Some(value.unwrap_or((name.1, name.1)));
            }
        }
        Some((target, rel))
    }

    /// A token (RFC 9110 tchar+).
    fn token(&mut self) -> Option<Span> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.i += 1;
        }
        (self.i > start).then_some((start, self.i))
    }

    /// A quoted string: the span inside the quotes, escapes as written (see [`unescape`]).
    /// `None` when the closing quote is missing.
    fn quoted(&mut self) -> Option<Span> {
        let start = self.i + 1;
        let mut i = start;
        loop {
            match self.s.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        self.i = i + 1;
        Some((start, i))
    }

    /// After a malformed link-value: move past the next comma that is outside a quoted string
    /// and outside `<…>`, or to the end.
    fn skip_past_comma(&mut self) {
        let (mut quoted, mut angle) = (false, false);
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' if quoted => self.i += 1,
                b'"' if !angle => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => return,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_format() {
        let h = r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="next", <https://api.github.com/repositories/1300192/issues?page=4>; rel="last""#;
        assert_eq!(
            find_rel(h, "next").as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=2")
        );
        assert_eq!(
            find_rel(h, "last").as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=4")
        );
        assert_eq!(find_rel(h, "prev"), None);
    }

    #[test]
    fn middle_page_and_variants() {
        let h = r#"<https://x/r?page=1>; rel="prev", <https://x/r?page=3>; rel="next", <https://x/r?page=5>; rel="last", <https://x/r?page=1>; rel="first""#;
        assert_eq!(find_rel(h, "next").as_deref(), Some("https://x/r?page=3"));
        assert_eq!(find_rel(h, "first").as_deref(), Some("https://x/r?page=1"));
        assert_eq!(
            find_rel("<https://a/b>; rel=next", "next").as_deref(),
            Some("https://a/b")
        );
        assert_eq!(
            find_rel(r#"<https://a/b>; title="x, y"; rel="prefetch next""#, "next").as_deref(),
            Some("https://a/b")
        );
    }

    #[test]
    fn recorded_octokit_headers() {
        let path = format!(
            "{}/testdata/github/recorded/octokit-fixtures-paginate-issues-raw.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut nexts = 0;
        for rec in v.as_array().unwrap() {
            let Some(h) = rec["rawHeaders"].as_array() else {
                continue;
            };
            for pair in h.chunks(2) {
                if pair[0].as_str().map(|s| s.eq_ignore_ascii_case("link")) == Some(true) {
                    let link = pair[1].as_str().unwrap();
                    if link.contains("rel=\"next\"") {
                        let next = find_rel(link, "next").unwrap();
                        assert!(next.starts_with("https://api.github.com/"), "{next}");
                        nexts += 1;
                    }
                }
            }
        }
        assert!(nexts >= 2, "expected recorded next links, saw {nexts}");
    }

    #[test]
    fn malformed_is_none() {
        for h in [
            "",
            "garbage",
            "<unterminated; rel=\"next\"",
            "<>; rel=\"next\"",
            "<https://a>; rel=\"last\"",
            "< >;rel=next",
            "<\t>; rel=next",
            "<https://a b/>; rel=next",
            "<https://a>; title=\"a; rel=next; b\"",
            "<https://a>; title=\"a, <https://b>; rel=next\"",
            "<https://a>; rel",
        ] {
            assert_eq!(find_rel(h, "next"), None, "{h}");
        }
    }

    #[test]
    fn quoted_parameters_are_values_not_parameters() {
        // A relation inside a quoted value must not be taken as the link's relation.
        let h = r#"<https://evil.example/>; title="a; rel=next; b", <https://real.example/?page=2>; rel="next""#;
        assert_eq!(find_rel(h, "next").as_deref(), Some("https://real.example/?page=2"));
        let h = r#"<https://evil.example/>; title="x\"; rel=next", <https://real.example/>; rel=next"#;
        assert_eq!(find_rel(h, "next").as_deref(), Some("https://real.example/"));
        // Only the first rel of a link counts (RFC 8288 3.3).
        assert_eq!(find_rel("<https://a/>; rel=prev; rel=next", "next"), None);
        // A malformed link-value does not hide the next one.
        assert_eq!(
            find_rel("<https://a/> junk; rel=next, <https://b/>; rel=next", "next").as_deref(),
            Some("https://b/")
        );
        assert_eq!(
            find_rel("< https://a/ >; rel=next", "next").as_deref(),
            Some("https://a/")
        );
        // A quoted-pair is the character it escapes (found by the 10-minute fuzzing run).
        assert_eq!(
            find_rel(r#"<https://a/>; rel="ne\xt""#, "next").as_deref(),
            Some("https://a/")
        );
    }
}
