//! The walk and its lines on a real directory tree (tempdir), no VM.

use super::events::Events;
use super::filter::Filter;
use super::walk::Walker;
use file_restore_wire::find::{FindEvent, FindQuery};
use std::fs;
use std::os::fd::OwnedFd;

/// Runs a walk of `dir` with the query `pairs`; the lines it wrote.
fn search(dir: &std::path::Path, pairs: &[(&str, &str)]) -> Vec<FindEvent> {
    let q = FindQuery::from_pairs(pairs.iter().copied()).unwrap();
    let filter = Filter::compile(&q).unwrap();
    let mut buf = Vec::new();
    let mut out = Events::new(&mut buf, q.max_results);
    let fd: OwnedFd = fs::File::open(dir).unwrap().into();
    let mut w = Walker {
        filter: &filter,
        out: &mut out,
        prefix: b"/d/part/1".to_vec(),
    };
    w.walk(&fd, &mut Vec::new(), 0).unwrap();
    out.end().unwrap();
    String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn matches(ev: &[FindEvent]) -> Vec<String> {
    let mut v: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            FindEvent::Match(e) => e.path.clone(),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir_all(p.join("home/alice/docs")).unwrap();
    fs::create_dir_all(p.join("srv")).unwrap();
    fs::write(p.join("home/alice/docs/report.odt"), vec![0u8; 100]).unwrap();
    fs::write(p.join("home/alice/REPORT.ODT"), b"x").unwrap();
    fs::write(p.join("srv/report.odt.bak"), b"y").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p.join("srv/link.odt")).unwrap();
    t
}

#[test]
fn names_types_and_sizes() {
    let t = tree();
    let all = search(t.path(), &[]);
    assert_eq!(matches(&all).len(), 8, "{all:?}");
    assert_eq!(
        matches(&search(t.path(), &[("name", "*.odt")])),
        [
            "/d/part/1/home/alice/docs/report.odt",
            "/d/part/1/srv/link.odt"
        ]
    );
    assert_eq!(
        matches(&search(t.path(), &[("iname", "report.odt")])),
        [
            "/d/part/1/home/alice/REPORT.ODT",
            "/d/part/1/home/alice/docs/report.odt"
        ]
    );
    assert_eq!(
        matches(&search(t.path(), &[("name", "*.odt"), ("type", "l")])),
        ["/d/part/1/srv/link.odt"]
    );
    assert_eq!(
        matches(&search(t.path(), &[("min-size", "2")])),
        ["/d/part/1/home/alice/docs/report.odt"]
    );
    assert_eq!(
        matches(&search(t.path(), &[("regex", "^/home/.*/docs$")])),
        ["/d/part/1/home/alice/docs"]
    );
    // A symlink is reported, never followed.
    let link = search(t.path(), &[("name", "link.odt")]);
    let FindEvent::Match(e) = &link[0] else {
        panic!("{link:?}")
    };
    assert_eq!(e.target.as_deref(), Some("/etc/passwd"));
}

#[test]
fn max_results_cuts_and_says_so() {
    let t = tree();
    let ev = search(t.path(), &[("max", "2")]);
    assert_eq!(matches(&ev).len(), 2);
    let Some(FindEvent::End(end)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert!(end.truncated && end.matched == 2, "{end:?}");
    let ev = search(t.path(), &[("max", "8")]);
    let Some(FindEvent::End(end)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert!(
        !end.truncated && end.matched == 8 && end.visited == 8,
        "{end:?}"
    );
}
