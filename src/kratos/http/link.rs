//! The `Link` response header of Kratos's keyset pagination (RFC 8288 syntax).
//!
//! Kratos writes `Link: </admin/identities?page_size=250&page_token=…>; rel="first",</…>; rel="next"`
//! (`oryx/pagination/keysetpagination/header.go`). The targets are relative references
//! (docs/kratos.md §7), so they are resolved against the admin base URL before the `page_token` is
//! read from the query. A missing `rel="next"` means the last page. A header that cannot be
//! parsed is an error, never "last page": a silently truncated listing would make a reconciler
//! believe identities are gone.

use reqwest::Url;
use reqwest::header::{HeaderMap, LINK};

/// One link-value: its target (as written, possibly relative) and its relation types, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LinkValue {
    pub target: String,
    pub rels: Vec<String>,
}

/// Parses one `Link` header value into its link-values, in order.
pub(super) fn parse_link_header(value: &str) -> Result<Vec<LinkValue>, String> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return Ok(links);
        }
        let Some(after_open) = rest.strip_prefix('<') else {
            return Err("a link-value does not start with '<'".to_owned());
        };
        let Some(close) = after_open.find('>') else {
            return Err("a link target has no closing '>'".to_owned());
        };
        let target = after_open[..close].trim().to_owned();
        rest = &after_open[close + 1..];
        let mut rels = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() || rest.starts_with(',') {
                break;
            }
            let Some(after_semicolon) = rest.strip_prefix(';') else {
                return Err(format!("unexpected text after the link target <{target}>"));
            };
            let (name, param_value, remaining) = parse_param(after_semicolon.trim_start())?;
            rest = remaining;
            if name.eq_ignore_ascii_case("rel") {
                rels.extend(
                    param_value
                        .unwrap_or_default()
                        .split_ascii_whitespace()
                        .map(str::to_ascii_lowercase),
                );
            }
        }
        links.push(LinkValue { target, rels });
    }
}

/// Parses `name[=value]` where value is a token or a quoted-string; returns the rest of the input.
fn parse_param(input: &str) -> Result<(&str, Option<String>, &str), String> {
    let name_end = input
        .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_ascii_whitespace())
        .unwrap_or(input.len());
    let name = &input[..name_end];
    if name.is_empty() {
        return Err("a link parameter has no name".to_owned());
    }
    let rest = input[name_end..].trim_start();
    let Some(after_equals) = rest.strip_prefix('=') else {
        return Ok((name, None, rest));
    };
    let after_equals = after_equals.trim_start();
    if let Some(quoted) = after_equals.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => return Ok((name, Some(value), &quoted[index + 1..])),
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                other => value.push(other),
            }
        }
        Err(format!(
            "the link parameter {name} has an unterminated quoted value"
        ))
    } else {
        let value_end = after_equals
            .find(|c: char| c == ';' || c == ',' || c.is_ascii_whitespace())
            .unwrap_or(after_equals.len());
        Ok((
            name,
            Some(after_equals[..value_end].to_owned()),
            &after_equals[value_end..],
        ))
    }
}

/// The `page_token` of the `rel="next"` link among all `Link` headers, if there is a next page.
pub(super) fn next_page_token(headers: &HeaderMap, base: &Url) -> Result<Option<String>, String> {
    for header in headers.get_all(LINK) {
        let value = header
            .to_str()
            .map_err(|_| "the Link header is not visible ASCII".to_owned())?;
        let links = parse_link_header(value)
            .map_err(|problem| format!("malformed Link header: {problem}"))?;
        let Some(next) = links
            .into_iter()
            .find(|link| link.rels.iter().any(|rel| rel == "next"))
        else {
            continue;
        };
        let url = base.join(&next.target).map_err(|error| {
            format!("the rel=\"next\" link target is not a URL reference: {error}")
        })?;
        return match url.query_pairs().find(|(key, _)| key == "page_token") {
            Some((_, token)) if !token.is_empty() => Ok(Some(token.into_owned())),
            _ => Err("the rel=\"next\" link carries no page_token".to_owned()),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn base() -> Url {
        Url::parse("http://kratos-admin:4434/").expect("test base URL")
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                LINK,
                HeaderValue::from_str(value).expect("test header value"),
            );
        }
        headers
    }

    #[test]
    fn a_relative_next_link_yields_its_page_token() {
        let headers = headers(&[
            r#"</admin/identities?page_size=3&page_token=first-token>; rel="first",</admin/identities?page_size=3&page_token=eyJrIjoiYWJjIn0%3D>; rel="next""#,
        ]);

        let token = next_page_token(&headers, &base()).expect("parses");

        assert_eq!(token.as_deref(), Some("eyJrIjoiYWJjIn0="));
    }

    #[test]
    fn an_absolute_next_link_is_read_the_same_way() {
        let headers = headers(&[
            r#"<https://kratos.example/admin/identities?page_token=abc&page_size=3>; rel=next"#,
        ]);

        assert_eq!(
            next_page_token(&headers, &base()),
            Ok(Some("abc".to_owned()))
        );
    }

    #[test]
    fn a_header_with_only_rel_first_means_the_last_page() {
        let headers = headers(&[r#"</admin/identities?page_size=3&page_token=xyz>; rel="first""#]);

        assert_eq!(next_page_token(&headers, &base()), Ok(None));
    }

    #[test]
    fn no_link_header_means_the_last_page() {
        assert_eq!(next_page_token(&HeaderMap::new(), &base()), Ok(None));
    }

    #[test]
    fn next_is_found_among_several_rels_and_several_headers() {
        let headers = headers(&[
            r#"</admin/identities?page_token=a>; rel="first""#,
            r#"</admin/identities?page_token=b>; title="x, y; z"; rel="prev start", </admin/identities?page_token=c>; REL="last NEXT""#,
        ]);

        assert_eq!(next_page_token(&headers, &base()), Ok(Some("c".to_owned())));
    }

    #[test]
    fn link_values_keep_their_order_targets_and_lowercased_rels() {
        let links = parse_link_header(r#"<a?x=1>; rel="first",<b?x=2>;rel=Next; type="text/html""#)
            .expect("parses");

        assert_eq!(
            links,
            vec![
                LinkValue {
                    target: "a?x=1".to_owned(),
                    rels: vec!["first".to_owned()]
                },
                LinkValue {
                    target: "b?x=2".to_owned(),
                    rels: vec!["next".to_owned()]
                },
            ]
        );
    }

    #[test]
    fn a_next_link_without_page_token_is_an_error_not_the_last_page() {
        let headers = headers(&[r#"</admin/identities?page_size=3>; rel="next""#]);

        assert!(next_page_token(&headers, &base()).is_err());
    }

    #[test]
    fn a_malformed_header_is_an_error_not_the_last_page() {
        for malformed in [
            r#"/admin/identities?page_token=a; rel="next""#,
            r#"</admin/identities?page_token=a; rel="next""#,
            r#"</admin/identities?page_token=a>; rel="next"#,
            r#"</admin/identities?page_token=a> rel="next""#,
        ] {
            assert!(
                next_page_token(&headers(&[malformed]), &base()).is_err(),
                "accepted {malformed}"
            );
        }
    }
}
