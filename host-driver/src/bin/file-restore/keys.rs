//! `--key-file FILE`: passphrases for LUKS containers and BitLocker volumes, one per line.
//!
//! The file is read here and its lines go to the VM in the body of one
//! authenticated API call ([`BlockRestoreDriver::unlock`]): never on a
//! command line, in the environment, in the run directory or in a log.
//! What became of each container is reported on stderr; a container no
//! passphrase opens is a warning that names it, and the command goes on
//! (paths inside it then fail with their own error).

use crate::output::info;
use anyhow::{bail, Context};
use file_restore::driver::BlockRestoreDriver;
use file_restore::util::text::terminal_safe as safe;
use file_restore_wire::{UnlockOutcome, MAX_PASSPHRASES};
use std::io::Read;
use std::path::Path;

/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The passphrases in `path`: its lines without their `\n` (or `\r\n`);
/// empty lines are skipped.
pub fn read_key_file(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the key file {}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    if data.len() as u64 > MAX_KEY_FILE {
        bail!(
            "the key file {} is larger than {} KiB: it should hold passphrases, one per line",
            path.display(),
            MAX_KEY_FILE / 1024
        );
    }
    let keys = parse_lines(&data);
    if keys.is_empty() {
        bail!(
            "the key file {} holds no passphrase (one per line)",
            path.display()
        );
    }
    if keys.len() > MAX_PASSPHRASES {
        bail!(
            "the key file {} holds {} passphrases; at most {MAX_PASSPHRASES} are tried",
            path.display(),
            keys.len()
        );
    }
    Ok(keys)
}

fn parse_lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Sends the key file's passphrases to `source`'s VM and reports, per
/// container, what happened.
pub async fn unlock(
    driver: &impl BlockRestoreDriver,
    source: &str,
    key_file: &Path,
) -> anyhow::Result<()> {
    let keys = read_key_file(key_file)?;
    let answer = driver
        .unlock(source, &keys)
        .await
        .with_context(|| format!("cannot send the passphrases of {}", key_file.display()))?;
    drop(keys);
    if answer.containers.is_empty() {
        info(&format!(
            "{source} has no locked LUKS, BitLocker or ZFS container; the key file {} was not needed",
            key_file.display()
        ));
    }
    for c in &answer.containers {
        let place = c.bucket.as_deref().unwrap_or("?");
        match c.outcome {
            // info() makes the whole line terminal-safe.
            // A ZFS dataset opens in place: its bucket is its own path.
            UnlockOutcome::Opened if c.encryption.starts_with("ZFS") => info(&format!(
                "loaded the key of {} dataset {}",
                c.encryption, c.container
            )),
            UnlockOutcome::Opened => info(&format!(
                "opened {} container {} as {place}",
                c.encryption, c.container
            )),
            UnlockOutcome::AlreadyOpen => info(&format!(
                "{} container {} is open ({place})",
                c.encryption, c.container
            )),
            UnlockOutcome::WrongKey | UnlockOutcome::Failed => eprintln!(
                "file-restore: warning: {} stays locked: {}",
                safe(&c.container),
                safe(c.message.as_deref().unwrap_or("not opened"))
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let keys = parse_lines(b"first pass\r\n\nsecond\nthird");
        assert_eq!(
            keys,
            vec![
                b"first pass".to_vec(),
                b"second".to_vec(),
                b"third".to_vec()
            ]
        );
        assert!(parse_lines(b"\n\n").is_empty());
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.keys");
        std::fs::write(&empty, b"\n").unwrap();
        let e = read_key_file(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.keys") && e.contains("no passphrase"),
            "{e}"
        );
        let big = dir.path().join("big.keys");
        std::fs::write(&big, vec![b'x'; 70_000]).unwrap();
        assert!(read_key_file(&big)
            .unwrap_err()
            .to_string()
            .contains("larger than"));
        let missing = read_key_file(&dir.path().join("nope")).unwrap_err();
        assert!(format!("{missing:#}").contains("nope"));
    }
}
