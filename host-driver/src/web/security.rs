//! The checks every request passes before anything else: the `Host` header
//! names the listen address (a DNS-rebinding page cannot talk to us under a
//! foreign name), the session token arrives (in the URL once, then as an
//! HttpOnly `SameSite=Strict` cookie), and state-changing calls are POST with
//! the CSRF token in a header. Plus the headers every answer carries (a
//! strict Content-Security-Policy among them).

use std::net::SocketAddr;

use hyper::header::{HeaderMap, HeaderValue, COOKIE, HOST, ORIGIN};
use hyper::{Method, StatusCode};

/// Every answer's Content-Security-Policy: only our own scripts, styles and
/// connections, no frames, no forms elsewhere, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
base-uri 'none'";

/// The header the page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Why a request was refused (status and message for the error body).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401 (no token), 403 (wrong token, Host, CSRF) or 405.
    pub status: StatusCode,
    /// For people.
    pub message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request that passed [`Guard::check`] authenticated with.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// The session cookie.
    Cookie,
    /// The token in the URL (`GET /?token=`): answer with the cookie and a
    /// redirect to a URL without it.
    UrlToken,
}

/// The session's secrets and the address it listens on.
#[derive(Debug)]
pub struct Guard {
    authority: String,
    token: String,
    csrf: String,
    cookie_name: String,
}

impl Guard {
    /// Fresh secrets (128 random bits each) for a server on `addr`.
    pub fn new(addr: SocketAddr) -> Result<Guard, crate::helper::initrd::InitrdError> {
        Ok(Guard {
            authority: addr.to_string(),
            token: crate::helper::initrd::new_ticket()?,
            csrf: crate::helper::initrd::new_ticket()?,
            // Cookies are not kept apart by port: a name per port keeps two
            // servers on one host from overwriting each other's session.
            cookie_name: format!("file_restore_session_{}", addr.port()),
        })
    }

    /// `ADDR:PORT` as listened on (`[::1]:PORT` for IPv6): the only
    /// acceptable `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The session token (in the printed URL).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CSRF token (in the page, sent back in [`CSRF_HEADER`]).
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The `Set-Cookie` value that carries the session.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name, self.token
        )
    }

    /// Checks Host, token and (for POST) CSRF token and Origin. `url_token`
    /// is the `token` query value of `GET /`, when there is one.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        url_token: Option<&str>,
    ) -> Result<Access, Refusal> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        if !host.is_some_and(|h| h.eq_ignore_ascii_case(&self.authority)) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "refused: the Host header must be {} (the address this server listens on)",
                    self.authority
                ),
            ));
        }
        let access = match (self.cookie_token(headers), url_token) {
            (Some(t), _) if same_secret(t.as_bytes(), self.token.as_bytes()) => Access::Cookie,
            (_, Some(t)) if same_secret(t.as_bytes(), self.token.as_bytes()) => Access::UrlToken,
            (None, None) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "no session: open the URL that `file-restore serve` printed",
                ))
            }
            _ => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "wrong session token: open the URL that `file-restore serve` printed",
                ))
            }
        };
        if *method == Method::POST {
            let origin_ok = match headers.get(ORIGIN).map(HeaderValue::to_str) {
                None => true,
                Some(Ok(o)) => o.eq_ignore_ascii_case(&format!("http://{}", self.authority)),
                Some(Err(_)) => false,
            };
            let csrf_ok = headers
                .get(CSRF_HEADER)
                .is_some_and(|v| same_secret(v.as_bytes(), self.csrf.as_bytes()));
            if !origin_ok || !csrf_ok {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "refused: a POST needs this page's CSRF token and origin",
                ));
            }
        }
        Ok(access)
    }

    /// The session cookie's value, if the request has one.
    fn cookie_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.cookie_name)
            .map(|(_, v)| v)
    }
}

/// Headers every answer carries.
pub fn harden(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    if !headers.contains_key("cache-control") {
        set(headers, "cache-control", "no-store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new("127.0.0.1:8917".parse().expect("addr")).expect("guard")
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn host_token_and_csrf_are_required() {
        let g = guard();
        let cookie = format!("a=b; file_restore_session_8917={}", g.token());
        let ok = headers(&[
            ("host", "127.0.0.1:8917".into()),
            ("cookie", cookie.clone()),
        ]);
        assert_eq!(g.check(&Method::GET, &ok, None), Ok(Access::Cookie));
        let foreign = headers(&[
            ("host", "evil.example:8917".into()),
            ("cookie", cookie.clone()),
        ]);
        assert_eq!(
            g.check(&Method::GET, &foreign, None).map_err(|r| r.status),
            Err(StatusCode::FORBIDDEN)
        );
        let none = headers(&[("host", "127.0.0.1:8917".into())]);
        assert_eq!(
            g.check(&Method::GET, &none, None).map_err(|r| r.status),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            g.check(&Method::GET, &none, Some(g.token())),
            Ok(Access::UrlToken)
        );
        assert_eq!(
            g.check(&Method::GET, &none, Some("0123"))
                .map_err(|r| r.status),
            Err(StatusCode::FORBIDDEN)
        );
        // Another port's cookie is not ours.
        let other = headers(&[
            ("host", "127.0.0.1:8917".into()),
            ("cookie", format!("file_restore_session_8918={}", g.token())),
        ]);
        assert!(g.check(&Method::GET, &other, None).is_err());
        assert_eq!(
            g.check(&Method::POST, &ok, None).map_err(|r| r.status),
            Err(StatusCode::FORBIDDEN)
        );
        let post = headers(&[
            ("host", "127.0.0.1:8917".into()),
            ("cookie", cookie.clone()),
            ("x-csrf-token", g.csrf().into()),
            ("origin", "http://127.0.0.1:8917".into()),
        ]);
        assert_eq!(g.check(&Method::POST, &post, None), Ok(Access::Cookie));
        let cross = headers(&[
            ("host", "127.0.0.1:8917".into()),
            ("cookie", cookie),
            ("x-csrf-token", g.csrf().into()),
            ("origin", "http://evil.example".into()),
        ]);
        assert!(g.check(&Method::POST, &cross, None).is_err());
    }
}
