//! VM names: systemd unit-name escaping and a stable hash of image identities.

use super::ImageIdentity;

/// Escapes bytes the way `systemd-escape` (without `--path`) does.
///
/// `/` becomes `-`; bytes outside `[A-Za-z0-9:_.]` become `\xNN` (lowercase
/// hex), and so does a leading `.`. The result is ASCII and reversible, so
/// different inputs give different names.
pub fn unit_escape(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len());
    for (i, &b) in input.iter().enumerate() {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.');
        if b == b'/' {
            out.push('-');
        } else if plain && !(i == 0 && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// 64-bit FNV-1a: small, stable across Rust versions and platforms (unlike
/// `DefaultHasher`), which matters because names outlive one binary.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Sixteen hex digits identifying a set of images by device, inode, size and
/// modification time, in the order given.
pub fn identity_hash(ids: &[ImageIdentity]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for id in ids {
        for v in [id.dev, id.ino, id.size] {
            h = fnv1a(&v.to_le_bytes(), h);
        }
        h = fnv1a(&id.mtime.to_le_bytes(), h);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::process::Command;

    #[test]
    fn escape_examples() {
        assert_eq!(unit_escape(b"qemu_/tmp/x.qcow2"), "qemu_-tmp-x.qcow2");
        assert_eq!(unit_escape(b".a/b-c"), "\\x2ea-b\\x2dc");
        assert_eq!(unit_escape(b"a b\xff"), "a\\x20b\\xff");
    }

    /// Compares with the real `systemd-escape` where it is installed.
    #[test]
    fn escape_matches_systemd_escape() {
        let samples: &[&[u8]] = &[
            b"qemu_/tmp/a b-\xc3\xbc.qcow2",
            b".hidden/x",
            b"/a//b/",
            b"nbd+unix:///e?socket=/s",
            b"qemu_/srv/store/100/qemu-1700000000",
            b"weird\\name\t$%&'\"",
        ];
        for s in samples {
            let out = match Command::new("systemd-escape")
                .arg(std::ffi::OsStr::from_bytes(s))
                .output()
            {
                Ok(o) if o.status.success() => o,
                _ => {
                    eprintln!("systemd-escape not available: comparison skipped");
                    return;
                }
            };
            let want = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
            assert_eq!(
                unit_escape(s),
                want,
                "input {:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn hash_changes_with_identity() {
        let a = ImageIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: 4,
        };
        let mut b = a.clone();
        b.mtime = 5;
        let one = std::slice::from_ref(&a);
        assert_eq!(identity_hash(one), identity_hash(one));
        assert_ne!(identity_hash(one), identity_hash(&[b]));
        assert_eq!(identity_hash(&[a]).len(), 16);
    }
}
