//! The nbd:// and nbd+unix:// URIs a restore VM's disks may come from:
//! their shape, checked the same way by the CLI (`source`) and by
//! `file-restore-helper` before QEMU is given one.

/// Why `scheme://rest` (`scheme` being `nbd` or `nbd+unix`) is not a
/// usable NBD URI, or `None` when it is.
pub fn uri_problem(scheme: &str, rest: &str) -> Option<&'static str> {
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains whitespace or control characters");
    }
    if rest.contains('#') {
        return Some("fragments (#) are not allowed");
    }
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (_export, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    if scheme == "nbd" {
        if query.is_some() {
            return Some("nbd:// takes no query parameters");
        }
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let Some((h, after)) = h.split_once(']') else {
                return Some("unterminated [IPv6] host");
            };
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Some("the host is missing");
        }
        if host.contains('@') {
            return Some("user information is not supported");
        }
        if let Some(p) = port {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => {}
                _ => return Some("the port must be a number from 1 to 65535"),
            }
        }
    } else {
        if !authority.is_empty() {
            return Some("nbd+unix:// takes no host (write nbd+unix:///EXPORT?socket=…)");
        }
        let Some(socket) = query.and_then(|q| q.strip_prefix("socket=")) else {
            return Some("the socket=/PATH parameter is missing");
        };
        if socket.contains('&') {
            return Some("only the socket parameter is supported");
        }
        if !socket.starts_with('/') {
            return Some("the socket path must be absolute");
        }
    }
    None
}

/// True when `uri` is a well-formed `nbd://` or `nbd+unix://` URI.
pub fn is_nbd_uri(uri: &str) -> bool {
    match uri.split_once("://") {
        Some((scheme @ ("nbd" | "nbd+unix"), rest)) => uri_problem(scheme, rest).is_none(),
        _ => false,
    }
}
