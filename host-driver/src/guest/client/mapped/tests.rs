use super::*;
use file_restore_wire::map::MapExtent;

fn disks() -> Vec<String> {
    vec!["d0".into(), "d1".into()]
}

fn ext(offset: u64, length: u64, disk: Option<&str>, at: u64) -> MapExtent {
    MapExtent {
        offset,
        length,
        disk: disk.map(str::to_owned),
        disk_offset: at,
    }
}

fn page(size: u64, extents: Vec<MapExtent>, next: Option<u64>) -> FileMap {
    FileMap {
        size,
        unmappable: None,
        extents,
        next,
    }
}

fn one_page(p: FileMap) -> Result<Option<MapOutcome>, String> {
    LayoutBuilder::default().add(p, &disks())
}

#[test]
fn a_good_map_in_two_pages() {
    let mut b = LayoutBuilder::default();
    let r = b
        .add(
            page(
                100,
                vec![ext(0, 40, Some("d0"), 4096), ext(40, 10, None, 0)],
                Some(50),
            ),
            &disks(),
        )
        .unwrap();
    assert!(r.is_none());
    assert_eq!(b.pos(), 50);
    let Some(MapOutcome::Layout(l)) = b
        .add(page(100, vec![ext(50, 50, Some("d1"), 0)], None), &disks())
        .unwrap()
    else {
        panic!("not a layout");
    };
    assert_eq!(l.size, 100);
    assert_eq!(l.disks, ["d0", "d1"]);
    assert_eq!(l.runs[1].source, Source::Zeros);
    assert_eq!(l.runs[2].source, Source::Disk(1, 0));
    let p = plan(&l, &["e0".into(), "e1".into()], 30, 59);
    assert_eq!(
        p,
        [
            Planned {
                length: 10,
                from: Some(("e0".into(), 4096 + 30))
            },
            Planned {
                length: 10,
                from: None
            },
            Planned {
                length: 10,
                from: Some(("e1".into(), 0))
            },
        ]
    );
}

#[test]
fn hostile_maps_are_refused() {
    // A gap, an overlap, past the size, empty, an unknown disk.
    for (p, why) in [
        (
            page(
                100,
                vec![ext(0, 40, Some("d0"), 0), ext(50, 50, None, 0)],
                None,
            ),
            "tile",
        ),
        (
            page(
                100,
                vec![ext(0, 60, Some("d0"), 0), ext(50, 50, None, 0)],
                None,
            ),
            "tile",
        ),
        (
            page(100, vec![ext(0, 200, Some("d0"), 0)], None),
            "past the file's size",
        ),
        (
            page(
                100,
                vec![ext(0, 0, Some("d0"), 0), ext(0, 100, None, 0)],
                None,
            ),
            "empty",
        ),
        (
            page(100, vec![ext(0, 100, Some("host-disk"), 0)], None),
            "does not have",
        ),
        (
            page(100, vec![ext(0, 100, Some("d0"), u64::MAX - 10)], None),
            "overflows",
        ),
        (
            page(100, vec![ext(0, 40, Some("d0"), 0)], None),
            "before the file's end",
        ),
        (
            page(u64::MAX, vec![ext(u64::MAX - 1, 5, None, 0)], None),
            "tile",
        ),
    ] {
        let e = one_page(p).unwrap_err();
        assert!(e.contains(why), "{e} (wanted {why})");
    }
    // A map larger than the size claims more than the file holds.
    let e = one_page(page(10, vec![ext(0, 10, None, 0)], Some(20))).unwrap_err();
    assert!(e.contains("next starts at 20"), "{e}");
}

#[test]
fn endless_or_shifting_pages_are_refused() {
    // No progress: the next page starts where this one did.
    let e = one_page(page(100, vec![], Some(0))).unwrap_err();
    assert!(e.contains("next starts at 0"), "{e}");
    // The size changes between pages.
    let mut b = LayoutBuilder::default();
    b.add(page(100, vec![ext(0, 10, None, 0)], Some(10)), &disks())
        .unwrap();
    let e = b
        .add(page(200, vec![ext(10, 90, None, 0)], None), &disks())
        .unwrap_err();
    assert!(e.contains("size changed"), "{e}");
    // One extent per page forever ends at the page limit.
    let mut b = LayoutBuilder::default();
    let size = 10 * MAX_PAGES as u64;
    let mut err = None;
    for i in 0..=MAX_PAGES as u64 {
        match b.add(page(size, vec![ext(i, 1, None, 0)], Some(i + 1)), &disks()) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("finished"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert!(err.unwrap().contains("pages"));
    // Too many extents on one page.
    let many: Vec<MapExtent> = (0..=MAX_EXTENTS_PER_PAGE as u64)
        .map(|i| ext(i, 1, None, 0))
        .collect();
    let e = one_page(page(1 << 20, many, Some(4097))).unwrap_err();
    assert!(e.contains("extents"), "{e}");
}

#[test]
fn unmappable_is_a_fallback_not_an_error() {
    let mut p = page(100, vec![], None);
    p.unmappable = Some("compressed".into());
    match one_page(p).unwrap() {
        Some(MapOutcome::Stream { size: 100, reason }) => assert_eq!(reason, "compressed"),
        other => panic!("{other:?}"),
    }
}
