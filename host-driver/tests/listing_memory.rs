//! A large listing is parsed straight into typed entries: the heap used
//! while parsing stays near the size of the entries themselves, instead of
//! an untyped JSON tree several times larger. Counted with a global
//! allocator (this test binary holds this one test only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        CURRENT.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn large_listing_parses_in_bounded_memory() {
    let n = 100_000;
    let mut body = String::from("[");
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        let path =
            file_restore_wire::encode_path(format!("/disk0/part/1/dir/file-{i:06}").as_bytes());
        body.push_str(&format!(
            r#"{{"filepath":"{path}","text":"file-{i:06}","type":"f","leaf":true,"size":{i},"mtime":1700000000}}"#
        ));
    }
    body.push(']');
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    let entries = file_restore::guest::client::parse_listing(body.as_bytes()).unwrap();
    let peak = PEAK.load(Relaxed) - base;
    let kept = CURRENT.load(Relaxed) - base;
    assert_eq!(entries.len(), n);
    assert_eq!(entries[n - 1].text, "file-099999");
    eprintln!(
        "body {} bytes, entries {kept} bytes, parse peak {peak} bytes",
        body.len()
    );
    // The entries themselves, plus the growth of their vector.
    assert!(
        peak < kept * 2,
        "parse peak {peak} bytes for {kept} bytes of entries"
    );
}
