//! Query strings of the web API: `k=v&…`, percent-decoded, `+` a space.

/// Decodes `%XX` escapes and `+`; `None` for a malformed escape or a
/// result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// The value of `key` in `query` (the first one), decoded.
pub fn param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| percent_decode(v))
}

/// Every value of `key` in `query`, decoded (`None` if one is malformed).
pub fn params(query: Option<&str>, key: &str) -> Option<Vec<String>> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

/// Every `key=value` pair of `query`, decoded, in order (`None` if one is
/// malformed).
pub fn pairs(query: Option<&str>) -> Option<Vec<(String, String)>> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_finds() {
        let q = Some("source=%2Ftmp%2Fa+b.img&path=L2E%3D&x");
        assert_eq!(param(q, "source").as_deref(), Some("/tmp/a b.img"));
        assert_eq!(param(q, "path").as_deref(), Some("L2E="));
        assert_eq!(param(q, "x").as_deref(), Some(""));
        assert_eq!(param(q, "y"), None);
        let many = Some("path=YQ%3D%3D&x=1&path=Yg%3D%3D");
        assert_eq!(
            params(many, "path"),
            Some(vec!["YQ==".to_string(), "Yg==".to_string()])
        );
        assert_eq!(params(Some("path=%zz"), "path"), None);
        assert_eq!(
            pairs(Some("name=*.txt&type=f&&x")),
            Some(vec![
                ("name".to_string(), "*.txt".to_string()),
                ("type".to_string(), "f".to_string()),
                ("x".to_string(), String::new()),
            ])
        );
        assert_eq!(pairs(Some("name=%zz")), None);
        assert_eq!(pairs(None), Some(vec![]));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
