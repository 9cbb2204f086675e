//! Ticket authentication: `Authorization: FileRestoreTicket <ticket>`.

use file_restore_wire::TICKET_SCHEME;

/// Outcome of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No Authorization header.
    Missing,
    /// A header with a wrong ticket or scheme.
    Invalid,
    /// The right ticket.
    Valid,
}

/// Compares in time independent of where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an `Authorization` header value against the ticket.
pub fn check(header: Option<&[u8]>, ticket: &str) -> Auth {
    let Some(value) = header else {
        return Auth::Missing;
    };
    let prefix = format!("{TICKET_SCHEME} ");
    match value.strip_prefix(prefix.as_bytes()) {
        Some(given) if constant_time_eq(given.trim_ascii(), ticket.as_bytes()) => Auth::Valid,
        _ => Auth::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert_eq!(check(None, "t"), Auth::Missing);
        assert_eq!(check(Some(b"FileRestoreTicket abc"), "abc"), Auth::Valid);
        assert_eq!(check(Some(b"FileRestoreTicket abd"), "abc"), Auth::Invalid);
        assert_eq!(check(Some(b"Bearer abc"), "abc"), Auth::Invalid);
        assert_eq!(check(Some(b"FileRestoreTicket "), ""), Auth::Valid);
        assert!(!constant_time_eq(b"a", b"ab"));
    }
}
