//! LUKS1/LUKS2 and BitLocker: containers are listed locked; `POST /api/unlock`
//! tries the caller's passphrases on each and opens what they fit, read-only,
//! with cryptsetup (`--type luks1|luks2|bitlk`; for BitLocker a passphrase is
//! the user password or the 48-digit recovery password). The opened content
//! is the bucket `luks/<name>` or `bitlocker/<name>` and is scanned like a
//! disk (LVM inside LUKS, LUKS inside an LV).
//!
//! A passphrase reaches cryptsetup on its stdin (`--key-file=-`), never on a
//! command line or in the environment, and is never logged. The volume key
//! stays out of the kernel keyring (`--disable-keyring`): it lives only in
//! the dm-crypt table, in guest memory, until the VM ends.

use super::blockdev;
use super::tools::Tools;
use std::time::Duration;

/// Limit for one cryptsetup call: the key derivation is made to take a
/// second or two on the machine that created the container, and TCG is
/// several times slower.
const LIMIT: Duration = Duration::from_secs(120);

/// cryptsetup's exit code for "no key available with this passphrase".
const EXIT_WRONG_KEY: i32 = 2;

/// The kinds of container cryptsetup opens here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// LUKS1 or LUKS2.
    Luks(u16),
    /// BitLocker (cryptsetup's `bitlk`).
    Bitlocker,
}

impl Kind {
    /// cryptsetup's `--type`.
    fn cryptsetup_type(self) -> String {
        match self {
            Kind::Luks(v) => format!("luks{v}"),
            Kind::Bitlocker => "bitlk".into(),
        }
    }

    /// Kind of the dm-crypt device with this uuid (cryptsetup names what it
    /// opens `CRYPT-LUKS1-…`, `CRYPT-LUKS2-…`, `CRYPT-BITLK-…`).
    fn of_uuid(uuid: &str) -> Option<Kind> {
        if uuid.starts_with("CRYPT-LUKS") {
            Some(Kind::Luks(2))
        } else if uuid.starts_with("CRYPT-BITLK") {
            Some(Kind::Bitlocker)
        } else {
            None
        }
    }
}

/// The dm-crypt device opened on `container` (a kernel name), if any.
pub fn opened_on(container: &str) -> Option<String> {
    blockdev::holders(container)
        .into_iter()
        .find(|h| blockdev::dm_uuid(h).is_some_and(|u| Kind::of_uuid(&u).is_some()))
}

/// The container under a dm-crypt device opened by us, and whether it is
/// BitLocker (`true`) or LUKS.
pub fn container_of(dm: &str) -> Option<(String, bool)> {
    let kind = Kind::of_uuid(&blockdev::dm_uuid(dm)?)?;
    let container = blockdev::slaves(dm).into_iter().next()?;
    Some((container, kind == Kind::Bitlocker))
}

/// The bucket name of a container's content: its own bucket path with `/`
/// as `-` (`part/2` → `part-2`, `lvm/vg/lv` → `lvm-vg-lv`, `raw/raw` → `raw`).
pub fn content_name(kind: &str, name: &str) -> String {
    if kind == "raw" {
        return "raw".into();
    }
    format!("{kind}-{}", name.replace('/', "-"))
}

/// What trying the passphrases on one container gave.
#[derive(Debug)]
pub enum Attempt {
    /// One of them opened it.
    Opened,
    /// None fits.
    WrongKey,
    /// cryptsetup failed otherwise.
    Failed(String),
}

/// Tries each passphrase on the container `kname` until one opens it
/// read-only.
pub fn open(tools: &Tools, kname: &str, kind: Kind, passphrases: &[Vec<u8>]) -> Attempt {
    let node = match blockdev::node(kname) {
        Ok(n) => n.to_string_lossy().into_owned(),
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let kind = kind.cryptsetup_type();
    let mapping = format!("fr-{kind}-{kname}");
    let args = [
        "open",
        "--type",
        &kind,
        "--readonly",
        "--key-file=-",
        "--disable-keyring",
        "--disable-external-tokens",
        "--disable-locks",
        &node,
        &mapping,
    ];
    for (i, pass) in passphrases.iter().enumerate() {
        let started = std::time::Instant::now();
        match tools.run("cryptsetup", &args, Some(pass), LIMIT) {
            Ok(out) if out.ok() => {
                log::info!(
                    "luks: {kname} opened with passphrase #{} in {} ms",
                    i + 1,
                    started.elapsed().as_millis()
                );
                return Attempt::Opened;
            }
            Ok(out) if out.code == Some(EXIT_WRONG_KEY) => {
                log::info!(
                    "luks: passphrase #{} does not open {kname} ({} ms)",
                    i + 1,
                    started.elapsed().as_millis()
                );
            }
            Ok(out) => {
                let tail = out.stderr_tail();
                let hint = if tail.contains("memory") || out.code == Some(3) {
                    " (the key derivation needs more memory than the VM has)"
                } else {
                    ""
                };
                return Attempt::Failed(format!(
                    "cryptsetup open failed (exit {:?}): {tail}{hint}",
                    out.code
                ));
            }
            Err(e) => return Attempt::Failed(e),
        }
    }
    Attempt::WrongKey
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_names() {
        assert_eq!(content_name("part", "2"), "part-2");
        assert_eq!(content_name("lvm", "vg/lv"), "lvm-vg-lv");
        assert_eq!(content_name("raw", "raw"), "raw");
        assert_eq!(content_name("md", "data"), "md-data");
    }
}
