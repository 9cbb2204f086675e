//! Target `big_file`: what the host reads from others when it copies a big
//! file from the disks: the NBD server's handshake bytes, and the guest's
//! map pages.

use file_restore::guest::client::mapped::{LayoutBuilder, MapOutcome, Source};
use file_restore::nbd;
use file_restore_wire::map::FileMap;

/// The first 38 bytes go to the handshake parsers (greeting, option reply
/// head), a byte picks a reply type for the rest as an option reply; the
/// input is also read as JSON map pages, one per line, fed to the checks.
pub fn big_file(data: &[u8]) {
    if data.len() >= 39 {
        let g: &[u8; 18] = data[..18].try_into().expect("18 bytes");
        let _ = nbd::parse_greeting(g);
        let h: &[u8; 20] = data[18..38].try_into().expect("20 bytes");
        let _ = nbd::parse_option_reply_head(h);
        let rtype = match data[38] % 4 {
            0 => 1,
            1 => 3,
            2 => 1 << 31 | 6,
            _ => u32::from(data[38]),
        };
        let _ = nbd::option_reply(rtype, &data[39..]);
    }
    let disks = vec!["d0".to_owned(), "d1".to_owned()];
    let mut b = LayoutBuilder::default();
    for line in data.split(|&c| c == b'\n') {
        let Ok(page) = serde_json::from_slice::<FileMap>(line) else {
            continue;
        };
        match b.add(page, &disks) {
            Ok(None) => {}
            Ok(Some(MapOutcome::Layout(l))) => {
                let mut pos = 0u64;
                for r in &l.runs {
                    assert_eq!(r.offset, pos, "runs do not tile the file");
                    assert!(r.length > 0, "an empty run");
                    if let Source::Disk(i, off) = r.source {
                        assert!(i < l.disks.len(), "a run names no disk");
                        assert!(disks.contains(&l.disks[i]), "an unknown disk");
                        assert!(
                            off.checked_add(r.length).is_some(),
                            "a disk range overflows"
                        );
                    }
                    pos += r.length;
                }
                assert_eq!(pos, l.size, "runs do not reach the file's size");
                return;
            }
            Ok(Some(MapOutcome::Stream { .. })) | Err(_) => return,
        }
    }
}
