//! RFC 8288 `Link` header parsing, as GitHub uses it for pagination.
//!
//! GitHub's pagination contract is: follow the `rel="next"` URL until there is none; never build
//! page URLs yourself (GitHub's URLs may switch to `/repositories/{id}` or cursor parameters).

/// The target of the link with relation `rel` (for example `"next"`), if the header has one.
///
/// Accepts GitHub's form `<https://…?page=2>; rel="next", <…>; rel="last"`, unquoted `rel=next`,
/// extra parameters, and several space-separated relations in one `rel`. Malformed parts are
/// skipped rather than guessed at.
pub fn find_rel(header: &str, rel: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let target = &after[..end];
        let params_and_more = &after[end + 1..];
        // Parameters run until the next link, which starts after a comma followed by '<'.
        let params_end = next_link_start(params_and_more).unwrap_or(params_and_more.len());
        let params = &params_and_more[..params_end];
        if params_have_rel(params, rel) && !target.is_empty() {
            return Some(target.trim().to_string());
        }
        rest = &params_and_more[params_end..];
        if rest.is_empty() {
            return None;
        }
    }
}

fn next_link_start(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut in_quotes = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes && s[i + 1..].trim_start().starts_with('<') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn params_have_rel(params: &str, rel: &str) -> bool {
    params.split(';').any(|p| {
        let Some((k, v)) = p.split_once('=') else {
            return false;
        };
        if !k.trim().eq_ignore_ascii_case("rel") {
            return false;
        }
        let v = v.trim().trim_end_matches(',').trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        v.split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case(rel))
    })
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
        ] {
            assert_eq!(find_rel(h, "next"), None, "{h}");
        }
    }
}
