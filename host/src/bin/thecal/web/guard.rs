//! The local server's door: every request must carry the per-launch token (in the URL
//! the server prints, then in a same-site cookie), name this server in its `Host`
//! header (against DNS rebinding: a page of another site that resolves its own name to
//! 127.0.0.1 sends its own name), and a request that changes anything must come from
//! this server's own pages (`Origin`, against cross-site form posts).
//!
//! The checks are a pure function of the request's method, headers and query
//! ([`Door::check`]), tested apart from the server.

use axum::http::{header, HeaderMap, Method};

/// The cookie the token travels in after the first request.
pub const COOKIE: &str = "thecal_token";

/// What the door knows: the token and the names this server answers to.
#[derive(Debug, Clone)]
pub struct Door {
    /// The per-launch secret (32 hex digits from the operating system's random source).
    pub token: String,
    /// `127.0.0.1:PORT`, `localhost:PORT` and the like: the `Host` values accepted.
    pub hosts: Vec<String>,
}

/// Why a request was turned away (status 403 or 421, with this text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No token, or another token.
    Token,
    /// A `Host` this server does not answer to.
    Host(String),
    /// A change requested from another origin, or with no origin.
    Origin(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Token => write!(
                f,
                "this programmer needs its access token: open the address `thecal serve` \
                 printed (it ends in ?token=…)"
            ),
            Refused::Host(h) => write!(
                f,
                "refused: the request is for host `{h}`, not this programmer's address"
            ),
            Refused::Origin(o) => write!(
                f,
                "refused: a change must come from this programmer's own pages, not from `{o}`"
            ),
        }
    }
}

/// Whether two strings are equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token of a request: `?token=` in the URL, the `X-Thecal-Token` header, or the
/// cookie.
fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Vec<&'a str> {
    let mut found = Vec::new();
    if let Some(q) = query {
        found.extend(q.split('&').filter_map(|kv| kv.strip_prefix("token=")));
    }
    if let Some(v) = headers.get("x-thecal-token").and_then(|v| v.to_str().ok()) {
        found.push(v);
    }
    for cookies in headers.get_all(header::COOKIE) {
        if let Ok(text) = cookies.to_str() {
            found.extend(
                text.split(';')
                    .filter_map(|c| c.trim().strip_prefix(COOKIE))
                    .filter_map(|c| c.strip_prefix('=')),
            );
        }
    }
    found
}

impl Door {
    /// Lets a request in, or says why not.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), Refused> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(Refused::Host(host.to_string()));
        }
        if !presented(headers, query)
            .iter()
            .any(|t| same(t, &self.token))
        {
            return Err(Refused::Token);
        }
        let safe = matches!(*method, Method::GET | Method::HEAD);
        if !safe {
            let origin = headers
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .unwrap_or("");
            let own = origin
                .strip_prefix("http://")
                .is_some_and(|o| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(o)));
            if !own {
                return Err(Refused::Origin(if origin.is_empty() {
                    "no origin".into()
                } else {
                    origin.into()
                }));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn door() -> Door {
        Door {
            token: "ab".repeat(16),
            hosts: vec!["127.0.0.1:7878".into(), "localhost:7878".into()],
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_token_is_needed_in_the_url_or_the_cookie() {
        let d = door();
        let host = (header::HOST, "127.0.0.1:7878");
        let token = "token=".to_string() + &"ab".repeat(16);
        assert_eq!(
            d.check(&Method::GET, &headers(std::slice::from_ref(&host)), None),
            Err(Refused::Token)
        );
        assert_eq!(
            d.check(
                &Method::GET,
                &headers(std::slice::from_ref(&host)),
                Some("token=abab")
            ),
            Err(Refused::Token)
        );
        assert_eq!(
            d.check(
                &Method::GET,
                &headers(std::slice::from_ref(&host)),
                Some(&token)
            ),
            Ok(())
        );
        let cookie = format!("other=1; {COOKIE}={}", "ab".repeat(16));
        assert_eq!(
            d.check(
                &Method::GET,
                &headers(&[host, (header::COOKIE, &cookie)]),
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn a_foreign_host_is_refused_even_with_the_token() {
        let d = door();
        let token = "token=".to_string() + &"ab".repeat(16);
        for host in ["evil.example:7878", "127.0.0.1:9999", ""] {
            assert_eq!(
                d.check(
                    &Method::GET,
                    &headers(&[(header::HOST, host)]),
                    Some(&token)
                ),
                Err(Refused::Host(host.into()))
            );
        }
        assert_eq!(
            d.check(
                &Method::GET,
                &headers(&[(header::HOST, "LOCALHOST:7878")]),
                Some(&token)
            ),
            Ok(())
        );
    }

    #[test]
    fn a_change_must_come_from_the_programmers_own_pages() {
        let d = door();
        let token = "token=".to_string() + &"ab".repeat(16);
        let host = (header::HOST, "127.0.0.1:7878");
        let post = |origin: Option<&str>| {
            let mut h = vec![host.clone()];
            if let Some(o) = origin {
                h.push((header::ORIGIN, o));
            }
            d.check(&Method::POST, &headers(&h), Some(&token))
        };
        assert_eq!(post(Some("http://127.0.0.1:7878")), Ok(()));
        assert_eq!(
            post(Some("http://evil.example")),
            Err(Refused::Origin("http://evil.example".into()))
        );
        assert_eq!(post(Some("null")), Err(Refused::Origin("null".into())));
        assert_eq!(post(None), Err(Refused::Origin("no origin".into())));
    }
}
