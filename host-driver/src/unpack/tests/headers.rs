//! The guard in front of the `tar` crate: extension headers capped, pax
//! sizes followed, GNU sparse entries refused.

use super::*;

#[test]
fn extension_headers_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let big = vec![b'a'; (guard::MAX_EXTENSION + 1) as usize];
    for (kind, what) in [
        (EntryType::XHeader, "pax extended"),
        (EntryType::XGlobalHeader, "pax global"),
        (EntryType::GNULongName, "GNU long name"),
        (EntryType::GNULongLink, "GNU long link"),
    ] {
        let t = tmp.path().join(what.replace(' ', "-"));
        let e = unpack(&with_extension(kind, &big), &t, &UnpackOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::TooLarge { .. }), "{msg}");
        let limit =
            format!("a {what} header of 1048577 bytes, more than the limit of 1048576 bytes");
        assert!(msg.contains(&limit), "{msg}");
        // The whole chain, as the CLI prints it, says it once.
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&limit).count(), 1, "{chain}");
        assert!(!t.join("after").exists());
    }
    // Just under the limit is fine: a pax header with a large comment.
    let mut rec = pax_record("comment", &vec![b'c'; 1_000_000]);
    rec.extend_from_slice(&pax_record("mtime", b"1234"));
    let t = tmp.path().join("ok");
    unpack(
        &with_extension(EntryType::XHeader, &rec),
        &t,
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(t.join("after")).unwrap(), b"after");
    assert_eq!(fs::metadata(t.join("after")).unwrap().mtime(), 1234);
}

/// A pax size override (> 8 GiB in real archives) keeps the guard in step
/// with the tar crate: the entry after it is read from the right place.
#[test]
fn pax_size_is_followed() {
    let data = vec![b'z'; 3000];
    let mut h = header(b"sized", EntryType::Regular, 5, 0o644, None);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", b"3000".as_slice())])
        .unwrap();
    b.append(&h, data.as_slice()).unwrap();
    let (fh, fdata) = owned("next", EntryType::Regular, 0o644, b"next");
    b.append(&fh, fdata.as_slice()).unwrap();
    let bytes = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    unpack(&bytes, tmp.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(tmp.path().join("sized")).unwrap(), data);
    assert_eq!(fs::read(tmp.path().join("next")).unwrap(), b"next");
}

#[test]
fn gnu_sparse_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Type 'S', with the name in the header and in a GNU long name.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_size(0);
    h.set_mode(0o644);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "disk.img", io::empty()).unwrap();
    let long = format!("{}/disk.img", "d".repeat(150));
    let mut h2 = tar::Header::new_gnu();
    h2.set_entry_type(EntryType::GNUSparse);
    h2.set_size(0);
    h2.set_mode(0o644);
    let mut b2 = tar::Builder::new(Vec::new());
    b2.append_data(&mut h2, &long, io::empty()).unwrap();
    for (bytes, name) in [
        (b.into_inner().unwrap(), "disk.img"),
        (b2.into_inner().unwrap(), long.as_str()),
    ] {
        let t = tmp.path().join("s");
        let e = unpack(&bytes, &t, &UnpackOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::Refused { .. }), "{msg}");
        assert!(
            msg.contains(&format!("refused archive entry '{name}'"))
                && msg.contains("GNU sparse tar entries are not supported"),
            "{msg}"
        );
        assert!(tree(&t).is_empty());
    }
    // pax sparse (GNU.sparse.* records, format 1.0).
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("GNU.sparse.major", b"1".as_slice()),
        ("GNU.sparse.minor", b"0".as_slice()),
        ("GNU.sparse.name", b"big.img".as_slice()),
        ("GNU.sparse.realsize", b"1048576".as_slice()),
    ])
    .unwrap();
    let h = header(
        b"GNUSparseFile.0/big.img",
        EntryType::Regular,
        0,
        0o644,
        None,
    );
    b.append(&h, io::empty()).unwrap();
    let t = tmp.path().join("pax");
    let e = unpack(&b.into_inner().unwrap(), &t, &UnpackOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("refused archive entry 'GNUSparseFile.0/big.img'")
            && msg.contains("GNU sparse"),
        "{msg}"
    );
    assert!(tree(&t).is_empty());
}
