//! A [`FindQuery`] compiled once per search: name globs (globset, the
//! matcher of ripgrep: one automaton for all patterns, linear time on any
//! name an image holds), the path regex (the `regex` crate: linear time,
//! bounded compiled size) and the type, size and time limits.

use crate::error::ApiError;
use file_restore_wire::find::FindQuery;
use file_restore_wire::EntryType;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Largest compiled regular expression or glob automaton.
const MAX_COMPILED: usize = 8 << 20;

/// What an entry must satisfy to match.
#[derive(Debug)]
pub struct Filter {
    names: Option<GlobSet>,
    regex: Option<regex::bytes::Regex>,
    entry_type: Option<EntryType>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    newer: Option<i64>,
    older: Option<i64>,
}

impl Filter {
    /// Compiles `q`; a bad glob or regex is a 400 naming it.
    pub fn compile(q: &FindQuery) -> Result<Filter, ApiError> {
        let names = if q.names.is_empty() && q.inames.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            let globs = q.names.iter().map(|n| (n, false));
            for (pattern, nocase) in globs.chain(q.inames.iter().map(|n| (n, true))) {
                let glob = GlobBuilder::new(pattern)
                    .case_insensitive(nocase)
                    // A name has no `/`; `*` matches any run of characters.
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| ApiError::bad_request(format!("bad name pattern: {e}")))?;
                set.add(glob);
            }
            Some(
                set.build()
                    .map_err(|e| ApiError::bad_request(format!("bad name pattern: {e}")))?,
            )
        };
        let regex = match &q.regex {
            None => None,
            Some(r) => Some(
                regex::bytes::RegexBuilder::new(r)
                    .size_limit(MAX_COMPILED)
                    .dfa_size_limit(MAX_COMPILED)
                    .build()
                    .map_err(|e| ApiError::bad_request(format!("bad regex {r:?}: {e}")))?,
            ),
        };
        Ok(Filter {
            names,
            regex,
            entry_type: q.entry_type,
            min_size: q.min_size,
            max_size: q.max_size,
            newer: q.newer,
            older: q.older,
        })
    }

    /// Whether the entry's name and in-bucket path can match (the checks
    /// that need no stat).
    pub fn name_and_path(&self, name: &[u8], path: &[u8]) -> bool {
        if let Some(set) = &self.names {
            if !set.is_match(OsStr::from_bytes(name)) {
                return false;
            }
        }
        match &self.regex {
            Some(r) => r.is_match(path),
            None => true,
        }
    }

    /// Whether an entry of this type can match.
    pub fn entry_type(&self, t: EntryType) -> bool {
        match self.entry_type {
            Some(want) => want == t,
            None => true,
        }
    }

    /// Whether the size and time filters need the entry's stat.
    pub fn needs_stat(&self) -> bool {
        self.min_size.is_some()
            || self.max_size.is_some()
            || self.newer.is_some()
            || self.older.is_some()
    }

    /// The size and time checks. Sizes apply to regular files only: with a
    /// size filter, nothing else matches (as `find -size` is meant).
    pub fn stat(&self, t: EntryType, size: u64, mtime: i64) -> bool {
        if self.min_size.is_some() || self.max_size.is_some() {
            if t != EntryType::File {
                return false;
            }
            if self.min_size.is_some_and(|m| size < m) || self.max_size.is_some_and(|m| size > m) {
                return false;
            }
        }
        if self.newer.is_some_and(|n| mtime <= n) || self.older.is_some_and(|o| mtime >= o) {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pairs: &[(&str, &str)]) -> Filter {
        Filter::compile(&FindQuery::from_pairs(pairs.iter().copied()).unwrap()).unwrap()
    }

    #[test]
    fn globs_match_names_any_of_them() {
        let f = filter(&[("name", "*.odt"), ("name", "report-??.txt")]);
        assert!(f.name_and_path(b"a.odt", b"/x/a.odt"));
        assert!(f.name_and_path(b"report-07.txt", b"/report-07.txt"));
        assert!(!f.name_and_path(b"report-7.txt", b"/report-7.txt"));
        assert!(!f.name_and_path(b"A.ODT", b"/A.ODT"));
        // Names that are not UTF-8 are matched as bytes.
        assert!(f.name_and_path(b"\xff\xfe.odt", b"/\xff\xfe.odt"));
        let i = filter(&[("iname", "*.odt")]);
        assert!(i.name_and_path(b"A.ODT", b"/A.ODT"));
    }

    #[test]
    fn regex_searches_the_path_and_both_must_hold() {
        let f = filter(&[("regex", "^/home/[a-z]+/"), ("name", "*.txt")]);
        assert!(f.name_and_path(b"a.txt", b"/home/alice/a.txt"));
        assert!(!f.name_and_path(b"a.txt", b"/srv/home/alice/a.txt"));
        assert!(!f.name_and_path(b"a.odt", b"/home/alice/a.odt"));
    }

    #[test]
    fn sizes_only_for_files_times_for_all() {
        let f = filter(&[("min-size", "10"), ("max-size", "20")]);
        assert!(f.needs_stat());
        assert!(f.stat(EntryType::File, 10, 0) && f.stat(EntryType::File, 20, 0));
        assert!(!f.stat(EntryType::File, 9, 0) && !f.stat(EntryType::File, 21, 0));
        assert!(!f.stat(EntryType::Directory, 15, 0));
        let t = filter(&[("newer", "100"), ("older", "200")]);
        assert!(t.stat(EntryType::Directory, 0, 150));
        assert!(!t.stat(EntryType::File, 0, 100) && !t.stat(EntryType::File, 0, 200));
    }

    #[test]
    fn bad_patterns_are_400() {
        for (k, v) in [("regex", "(unclosed"), ("name", "[z-a")] {
            let q = FindQuery::from_pairs([(k, v)]).unwrap();
            let e = Filter::compile(&q).unwrap_err();
            assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{k}={v}");
        }
    }
}
