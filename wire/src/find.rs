//! Search (`GET /api/find`) and stat (`GET /api/stat`): the query both
//! sides build and parse, and the lines of the streamed answer.
//!
//! A find answer is JSON Lines (`application/jsonl`): one [`FindEvent`] per
//! line, written while the daemon walks, so a client shows matches as they
//! come. The last line of a complete answer is an [`FindEvent::End`]; an
//! answer without one broke off. The walk runs in the guest, so only matches
//! cross vsock; the host still bounds what it reads (a guest is untrusted):
//! lines of at most [`MAX_FIND_LINE`] bytes, at most the matches it asked
//! for, at most [`MAX_FIND_SKIPS`] skip lines and a progress line no more
//! often than [`PROGRESS_EVERY_MS`] allows.

use serde::{Deserialize, Serialize};

use crate::{query_escape, Entry, EntryType};

/// Matches returned when the caller names no limit.
pub const DEFAULT_MAX_RESULTS: u64 = 1_000;
/// The largest `max` the daemon accepts.
pub const MAX_MAX_RESULTS: u64 = 1_000_000;
/// Longest line of a find answer (an Entry with a 4 KiB path and a 64 KiB
/// symlink target fits many times over).
pub const MAX_FIND_LINE: usize = 256 * 1024;
/// Most `skip` lines one answer carries (later skips are only counted).
pub const MAX_FIND_SKIPS: u64 = 1_000;
/// Most name patterns (`name` and `iname` together) in one query.
pub const MAX_PATTERNS: usize = 64;
/// Longest pattern or regular expression, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Deepest directory level the walk descends to (below the bucket's root);
/// deeper directories are reported as skipped.
pub const MAX_DEPTH: usize = 256;
/// The daemon sends a progress line at most this often (and at least this
/// often while it walks without finding anything, so the host can tell a
/// long search from a stalled one).
pub const PROGRESS_EVERY_MS: u64 = 1_000;

/// What to search for. Every filter given must hold (AND); the name
/// patterns among themselves are alternatives (OR): `--name '*.odt' --name
/// '*.doc'` finds both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindQuery {
    /// Shell globs matched against the entry's name (case-sensitive).
    pub names: Vec<String>,
    /// Shell globs matched against the name, ignoring case.
    pub inames: Vec<String>,
    /// A regular expression (Rust `regex` syntax) searched for in the whole
    /// path inside its bucket (`/home/alice/report.odt`); anchor it with `^…$`
    /// to match the whole path.
    pub regex: Option<String>,
    /// Only entries of this type (`f`, `d` or `l`).
    pub entry_type: Option<EntryType>,
    /// Only regular files of at least this many bytes.
    pub min_size: Option<u64>,
    /// Only regular files of at most this many bytes.
    pub max_size: Option<u64>,
    /// Only entries modified after this time (seconds since the epoch).
    pub newer: Option<i64>,
    /// Only entries modified before this time (seconds since the epoch).
    pub older: Option<i64>,
    /// Stop after this many matches (the answer then says `truncated`).
    pub max_results: u64,
}

impl FindQuery {
    /// A query that matches everything, with the default limit.
    pub fn new() -> FindQuery {
        FindQuery {
            max_results: DEFAULT_MAX_RESULTS,
            ..FindQuery::default()
        }
    }

    /// The query string's parameters after `path=` (each starting with `&`).
    pub fn to_query(&self) -> String {
        let mut q = String::new();
        let mut add = |k: &str, v: &str| {
            q.push('&');
            q.push_str(k);
            q.push('=');
            q.push_str(&query_escape(v));
        };
        for n in &self.names {
            add("name", n);
        }
        for n in &self.inames {
            add("iname", n);
        }
        if let Some(r) = &self.regex {
            add("regex", r);
        }
        if let Some(t) = self.entry_type {
            add("type", &t.letter().to_string());
        }
        if let Some(s) = self.min_size {
            add("min-size", &s.to_string());
        }
        if let Some(s) = self.max_size {
            add("max-size", &s.to_string());
        }
        if let Some(t) = self.newer {
            add("newer", &t.to_string());
        }
        if let Some(t) = self.older {
            add("older", &t.to_string());
        }
        add("max", &self.max_results.to_string());
        q
    }

    /// Parses the (percent-decoded) query parameters of a find call;
    /// unknown keys (such as `path`) are the caller's business. Every limit
    /// of this module is checked here.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<FindQuery, String> {
        let mut q = FindQuery::new();
        let num = |k: &str, v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{k}={v:?} is not a non-negative whole number"))
        };
        let time = |k: &str, v: &str| -> Result<i64, String> {
            v.parse()
                .map_err(|_| format!("{k}={v:?} is not a time in seconds since the epoch"))
        };
        let pattern = |k: &str, v: &str| -> Result<String, String> {
            if v.is_empty() || v.len() > MAX_PATTERN_LEN {
                return Err(format!("{k} must be 1 to {MAX_PATTERN_LEN} bytes long"));
            }
            Ok(v.to_owned())
        };
        for (k, v) in pairs {
            match k {
                "name" => q.names.push(pattern(k, v)?),
                "iname" => q.inames.push(pattern(k, v)?),
                "regex" => q.regex = Some(pattern(k, v)?),
                "type" => {
                    q.entry_type = Some(match v {
                        "f" => EntryType::File,
                        "d" => EntryType::Directory,
                        "l" => EntryType::Symlink,
                        _ => return Err(format!("type={v:?}: expected f, d or l")),
                    })
                }
                "min-size" => q.min_size = Some(num(k, v)?),
                "max-size" => q.max_size = Some(num(k, v)?),
                "newer" => q.newer = Some(time(k, v)?),
                "older" => q.older = Some(time(k, v)?),
                "max" => {
                    let n = num(k, v)?;
                    if n == 0 || n > MAX_MAX_RESULTS {
                        return Err(format!("max={n}: expected 1 to {MAX_MAX_RESULTS}"));
                    }
                    q.max_results = n;
                }
                _ => {}
            }
        }
        if q.names.len() + q.inames.len() > MAX_PATTERNS {
            return Err(format!(
                "{} name patterns: at most {MAX_PATTERNS}",
                q.names.len() + q.inames.len()
            ));
        }
        Ok(q)
    }
}

/// One line of a find answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindEvent {
    /// An entry that matches, with `path` set to its whole readable path.
    Match(Entry),
    /// A bucket or directory that was not searched, and why (a locked LUKS
    /// container, a bucket that does not mount, an unreadable directory).
    Skip(FindSkip),
    /// The walk goes on: this many entries looked at so far.
    Progress(FindProgress),
    /// The walk ended (always the last line of a complete answer).
    End(FindEnd),
}

/// A place the walk could not search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindSkip {
    /// Its API path (lossy UTF-8).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// How far the walk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindProgress {
    /// Entries looked at so far.
    pub visited: u64,
}

/// The summary closing a find answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindEnd {
    /// Entries looked at.
    pub visited: u64,
    /// Matches sent.
    pub matched: u64,
    /// Places not searched (more than the `skip` lines when they were cut
    /// at [`MAX_FIND_SKIPS`]).
    pub skipped: u64,
    /// True when the walk stopped at `max` matches with more left to look at.
    pub truncated: bool,
}

/// The answer of `GET /api/stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatAnswer {
    /// The entry (not followed if it is a symlink), with `path` set.
    pub entry: Entry,
    /// With `hash=sha256`, for a regular file: the SHA-256 of its content,
    /// 64 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                let mut out = Vec::new();
                let b = v.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                (k.to_owned(), String::from_utf8(out).unwrap())
            })
            .collect()
    }

    #[test]
    fn query_round_trip() {
        let q = FindQuery {
            names: vec!["*.odt".into(), "a&b=c".into()],
            inames: vec!["REPORT*".into()],
            regex: Some("^/home/[a-z]+/x$".into()),
            entry_type: Some(EntryType::File),
            min_size: Some(10),
            max_size: Some(1 << 30),
            newer: Some(-5),
            older: Some(1_700_000_000),
            max_results: 7,
        };
        let pairs = decode(&q.to_query());
        let back =
            FindQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, q);
    }

    #[test]
    fn limits_are_checked() {
        let bad = [
            ("max", "0"),
            ("max", "1000001"),
            ("type", "x"),
            ("min-size", "-1"),
            ("newer", "yesterday"),
            ("name", ""),
        ];
        for (k, v) in bad {
            assert!(FindQuery::from_pairs([(k, v)]).is_err(), "{k}={v}");
        }
        let many: Vec<(&str, &str)> = (0..=MAX_PATTERNS).map(|_| ("name", "*")).collect();
        assert!(FindQuery::from_pairs(many).is_err());
        let long = "x".repeat(MAX_PATTERN_LEN + 1);
        assert!(FindQuery::from_pairs([("regex", long.as_str())]).is_err());
    }

    #[test]
    fn events_are_one_tagged_object() {
        let e = FindEvent::End(FindEnd {
            visited: 3,
            matched: 1,
            skipped: 0,
            truncated: false,
        });
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"end":{"visited":3,"matched":1,"skipped":0,"truncated":false}}"#
        );
        assert_eq!(serde_json::from_str::<FindEvent>(&s).unwrap(), e);
    }
}
