//! BitLocker volumes made by Windows (issue 19): `../shared/corpus/bitlocker`
//! (or `FILE_RESTORE_BITLOCKER_CORPUS`), skipped with the reason where it is
//! absent. Named and listed locked; opened read-only with the user password
//! or the recovery password (cryptsetup `bitlk` in the guest) into a
//! `bitlocker/` bucket; a volume cryptsetup cannot activate stays locked and
//! says why.

use super::G;
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::sys;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The user password of every corpus volume.
const PASSWORD: &str = "anaconda";
/// The recovery password of bitlk-aes-xts-128.raw.
const XTS_RECOVERY: &str = "235818-357951-253979-013365-241120-245575-342914-591910";

/// The corpus archive, or `None` (the reason printed) where it is absent.
fn corpus(ctx: &Ctx) -> Option<PathBuf> {
    let p = std::env::var_os("FILE_RESTORE_BITLOCKER_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.repo.join("../shared/corpus/bitlocker/volumes.tar.xz"));
    if p.is_file() {
        Some(p)
    } else {
        println!(
            "skipped: no BitLocker corpus at {} (set FILE_RESTORE_BITLOCKER_CORPUS)",
            p.display()
        );
        None
    }
}

/// Unpacks the corpus (once) into `work/<name>`, keeping only `keep` (all
/// when empty); the directory is the SOURCE.
fn volumes(ctx: &Ctx, name: &str, keep: &[&str]) -> Result<Option<PathBuf>> {
    let Some(tar) = corpus(ctx) else {
        return Ok(None);
    };
    let dir = ctx.work.join(name);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        sys::tool(
            "tar",
            [
                OsStr::new("-xJf"),
                tar.as_os_str(),
                OsStr::new("-C"),
                dir.as_os_str(),
            ],
        )?;
        if !keep.is_empty() {
            for e in std::fs::read_dir(&dir)? {
                let p = e?.path();
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !keep.contains(&n) {
                    std::fs::remove_file(&p)?;
                }
            }
        }
    }
    Ok(Some(dir))
}

fn key_file(dir: &Path, name: &str, line: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("{line}\n"))?;
    Ok(p)
}

/// The disk names of SOURCE `src` (its volumes' names, as the CLI cut them).
fn disks(ctx: &Ctx, src: &Path) -> Result<Vec<String>> {
    let o = ctx
        .cli
        .run([OsStr::new("list"), src.as_os_str(), OsStr::new("/")])?
        .check()?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect())
}

/// Every case of this file.
pub fn bitlocker_groups() -> Vec<G> {
    let mut g = G::new("bitlocker", 40);
    g.case("named_and_locked", |ctx| {
        let Some(src) = volumes(ctx, "bitlocker-all", &[])? else {
            return Ok(());
        };
        let names = disks(ctx, &src)?;
        ensure!(names.len() == 4, "{names:?}");
        for d in &names {
            let o = ctx
                .cli
                .run([
                    OsStr::new("list"),
                    src.as_os_str(),
                    OsStr::new(&format!("/{d}/raw")),
                ])?
                .check()?;
            let out = String::from_utf8_lossy(&o.stdout);
            ensure!(out.contains("raw [BitLocker, locked]"), "{d}: {out}");
        }
        Ok(())
    });
    g.case("password_opens_and_partially_decrypted_is_named", |ctx| {
        let Some(src) = volumes(ctx, "bitlocker-all", &[])? else {
            return Ok(());
        };
        let sc = ctx.scratch("bitlk-keys")?;
        let keys = key_file(sc.path(), "keys", PASSWORD)?;
        let names = disks(ctx, &src)?;
        let xts = names
            .iter()
            .find(|d| d.as_str() == "bitlk-aes-xts-128")
            .context("no bitlk-aes-xts-128 disk")?;
        let o = ctx.cli.run([
            OsStr::new("list"),
            src.as_os_str(),
            OsStr::new(&format!("/{xts}/bitlocker")),
            OsStr::new("--key-file"),
            keys.as_os_str(),
        ])?;
        let o = o.check()?;
        let out = String::from_utf8_lossy(&o.stdout);
        ensure!(
            out.contains("raw [ntfs"),
            "the opened volume holds no NTFS: {out}"
        );
        for (disk, expect) in [
            ("bitlk-aes-xts-128", "opened BitLocker container"),
            ("bitlk-aes-cbc-128", "opened BitLocker container"),
            ("bitlk-aes-cbc-elepha", "opened BitLocker container"),
            (
                "bitlk-aes-xts-128-cl",
                "partially decrypted BITLK device is not supported",
            ),
        ] {
            ensure!(
                o.stderr
                    .lines()
                    .any(|l| l.contains(&format!("{disk}/raw/raw")) && l.contains(expect)),
                "{disk}: expected '{expect}':\n{}",
                o.stderr
            );
        }
        Ok(())
    });
    let mut r = G::new("bitlocker_recovery", 20);
    r.case("recovery_password_opens", |ctx| {
        let Some(src) = volumes(ctx, "bitlocker-xts", &["bitlk-aes-xts-128.raw"])? else {
            return Ok(());
        };
        let sc = ctx.scratch("bitlk-rec")?;
        let keys = key_file(sc.path(), "keys", XTS_RECOVERY)?;
        let o = ctx
            .cli
            .run([
                OsStr::new("list"),
                src.as_os_str(),
                OsStr::new("/bitlk-aes-xts-128/bitlocker"),
                OsStr::new("--key-file"),
                keys.as_os_str(),
            ])?
            .check()?;
        let out = String::from_utf8_lossy(&o.stdout);
        ensure!(out.contains("raw [ntfs"), "{out}\n{}", o.stderr);
        ensure!(
            o.stderr.contains("opened BitLocker container"),
            "{}",
            o.stderr
        );
        Ok(())
    });
    vec![g, r]
}
