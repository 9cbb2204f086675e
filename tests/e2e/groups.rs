//! The cases, by group (one group per source, so they share its VM).

use crate::checks::{self, expect_error, extract_into, extract_to_file, sub_manifest, vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::cli::STARTED_VM;
use file_restore_tests::harness::Group;
use file_restore_tests::manifest::{self, Rules};
use file_restore_tests::sys::{self, show};
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

type G = Group<Ctx>;

/// Every group of the suite.
pub fn all(ctx: &Ctx) -> Result<Vec<G>> {
    let mut v = vec![usage(), evil(ctx), lifecycle(), parallel()];
    v.extend(crate::stacks::stack_groups(ctx)?);
    v.extend(bad_sources());
    // The matrix: every image with its buckets.
    for (key, weight) in [
        ("gpt.img", 100),
        ("gpt.qcow2", 60),
        ("mbr.img", 50),
        ("mbr.vmdk", 50),
        ("raw-ext4.img", 30),
        ("squashfs.img", 30),
        ("exfat.img", 15),
        ("iso.iso", 15),
        ("dirty-ext4.img", 15),
        ("dirty-xfs.img", 15),
        ("zeroed-super.img", 15),
        ("swap.img", 5),
        ("big-ext4.img", 40),
        // LVM activated in the guest: two LVs, one in two segments stored in
        // reverse order on the PV.
        ("lvm.img", 40),
    ] {
        let src = Src::image(ctx, key);
        let mut g = matrix_group(ctx, src.clone(), weight)?;
        match key {
            "gpt.img" => gpt_extras(&mut g, &src),
            "dirty-ext4.img" => dirty_ext4_extras(&mut g, &src),
            "big-ext4.img" => big_extras(&mut g, &src),
            _ => {}
        }
        v.push(g);
    }
    for (dir, weight) in [
        ("store/100/qemu-1700000000", 30),
        ("store/100/qemu-1700003600", 30),
        ("store/101/qemu-1700000000", 80),
    ] {
        let src = Src::snapshot(ctx, dir)?;
        let mut g = matrix_group(ctx, src.clone(), weight)?;
        store_extras(&mut g, &src);
        v.push(g);
    }
    v.push(crate::ntfs::ntfs_group(ctx)?);
    v.push(nbd_group(ctx)?);
    v.push(broken_transfer());
    Ok(v)
}

/// QEMU killed in the middle of a 256 MiB extract: exit 1, an error naming
/// the target, and neither the target nor a temporary file left behind.
fn broken_transfer() -> G {
    let mut g = G::new("broken_transfer", 20);
    g.case("vm_killed_mid_extract_leaves_no_file", move |ctx| {
        let src = checks::private_copy(ctx, "big-ext4.img", "broken.img")?;
        ctx.cli.list_out(&src, b"/", "json")?.check()?;
        let vm = one_vm(ctx, &src, "before the extract")?;
        let pid = vm["pid"].as_u64().context("status without pid")?;
        let sc = ctx.scratch("broken")?;
        let dest = sc.path().join("256M.bin");
        let mut c = ctx.cli.command();
        c.arg("extract")
            .arg(&src)
            .arg("/broken/raw/raw/big/256M.bin")
            .arg(&dest)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().context("cannot start the CLI")?;
        // Kill the VM once the transfer is under way: the CLI's temporary file in the
        // target directory has grown past 1 MiB (a fixed sleep raced a loaded machine).
        let started = std::time::Instant::now();
        loop {
            let written: u64 = std::fs::read_dir(sc.path())?
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            if written > 1 << 20 {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the transfer did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: plain kill(2) of the VM's QEMU, whose pid status reported.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1),
            "exit {:?}, stderr: {stderr}",
            out.status.code()
        );
        ensure!(
            stderr.contains("was not written") && stderr.contains(&*dest.to_string_lossy()),
            "the error does not name the unwritten target: {stderr}"
        );
        ensure!(
            !dest.exists(),
            "{} exists after a broken transfer",
            dest.display()
        );
        let left: Vec<_> = std::fs::read_dir(sc.path())?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        ensure!(
            left.is_empty(),
            "files left in the target directory: {left:?}"
        );
        // The next call notices the dead VM and works again.
        let again = ctx
            .cli
            .list_out(&src, b"/broken/raw/raw/big", "json")?
            .check()?;
        ensure!(
            again.stderr.contains("no longer answers"),
            "no message about the dead VM: {}",
            again.describe()
        );
        ctx.cli.stop_vms_for(&src)?;
        Ok(())
    });
    g
}

/// The 256 MiB file extracted to a file (plain stream), checksummed.
fn big_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("raw/raw::extract_256M_file_sha256", move |ctx| {
        let m = manifest_of(ctx, &s, "raw/raw")?;
        let rel = b"big/256M.bin";
        let want = m
            .get(&rel[..])
            .and_then(|e| e.sha256.clone())
            .context("manifest has no big/256M.bin")?;
        let sc = ctx.scratch("big")?;
        let out = sc.path().join("256M.bin");
        extract_into(ctx, &s, &vpath(s.disk(), "raw/raw", rel), &out, &[])?.check()?;
        let got = sys::sha256_file(&out)?;
        ensure!(
            got == want,
            "{}: 256M.bin sha256 {got}, want {want}",
            s.label
        );
        let len = std::fs::metadata(&out)?.len();
        ensure!(len == 256 << 20, "{}: 256M.bin is {len} bytes", s.label);
        Ok(())
    });
}

/// gpt.qcow2 exported by qemu-nbd (read-only) and opened as an
/// `nbd+unix://` SOURCE: the same matrix checks as the image itself.
fn nbd_group(ctx: &Ctx) -> Result<G> {
    let dir = ctx.work.join("nbd");
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("gpt.sock");
    let child = std::process::Command::new("qemu-nbd")
        .args([
            "--read-only",
            "--persistent",
            "--shared=16",
            "--format=qcow2",
        ])
        .arg(format!("--socket={}", sock.display()))
        .arg(ctx.fx.path("gpt.qcow2"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start qemu-nbd (qemu-utils)")?;
    let t = std::time::Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(sock.exists(), "qemu-nbd did not create {}", sock.display());
    let src = Src {
        label: "nbd(gpt.qcow2)".into(),
        path: format!("nbd+unix:///?socket={}", sock.display()).into(),
        disks: std::collections::BTreeMap::from([("nbd".to_string(), "gpt.qcow2".to_string())]),
    };
    if let Ok(mut servers) = SERVERS.lock() {
        servers.push(child);
    }
    matrix_group(ctx, src, 60)
}

/// Helper servers (qemu-nbd) started while building the groups; killed by
/// [`kill_servers`] at the end of every run, filtered or not.
static SERVERS: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Kills and reaps the helper servers.
pub fn kill_servers() {
    if let Ok(mut servers) = SERVERS.lock() {
        for mut c in servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last case of a group: stop the VMs of its source.
pub fn teardown_for(g: &mut G, source: std::path::PathBuf) {
    g.teardown = Some(Box::new(move |ctx: &Ctx| {
        ctx.cli.stop_vms_for(&source)?;
        Ok(())
    }));
}

/// Levels, then per bucket: recursive listing, tar with every sha256, symlink
/// traps; unmountable buckets give their error.
pub fn matrix_group(ctx: &Ctx, src: Src, weight: u32) -> Result<G> {
    let mut g = G::new(src.label.clone(), weight);
    let s = src.clone();
    g.case("levels", move |ctx| checks::check_levels(ctx, &s));
    for (disk, key) in &src.disks {
        let prefix = if src.disks.len() > 1 {
            format!("{disk}/")
        } else {
            String::new()
        };
        for b in ctx.fx.buckets(key)? {
            if b.extended {
                continue;
            }
            let (s, d, bn) = (src.clone(), disk.clone(), b.name.clone());
            match (&b.manifest, b.mountable) {
                (Some(m), true) => {
                    let m = m.clone();
                    let (m1, m2) = (m.clone(), m.clone());
                    let traps = checks::has_traps(&ctx.fx.manifest(&m)?);
                    g.case(format!("{prefix}{bn}::list_tree"), move |ctx| {
                        checks::check_listing_tree(ctx, &s, &d, &bn, &m1)
                    });
                    let (s, d, bn) = (src.clone(), disk.clone(), b.name.clone());
                    g.case(format!("{prefix}{bn}::tar_sha256"), move |ctx| {
                        let want = ctx.fx.manifest(&m2)?;
                        checks::check_tar(ctx, &s, &vpath(&d, &bn, b""), &want, false)
                    });
                    if traps {
                        let (s, d, bn) = (src.clone(), disk.clone(), b.name.clone());
                        g.case(format!("{prefix}{bn}::symlink_traps"), move |ctx| {
                            let want = ctx.fx.manifest(&m)?;
                            checks::check_traps(ctx, &s, &d, &bn, &want)
                        });
                    }
                }
                _ => {
                    let fstype = b.fstype.clone().unwrap_or_else(|| "unknown".into());
                    g.case(format!("{prefix}{bn}::unmountable_error"), move |ctx| {
                        checks::check_unmountable(ctx, &s, &d, &bn, &fstype)
                    });
                }
            }
        }
    }
    teardown_for(&mut g, src.path.clone());
    Ok(g)
}

fn manifest_of(ctx: &Ctx, src: &Src, bucket: &str) -> Result<manifest::Manifest> {
    let key = src.disks.values().next().context("no disk")?;
    let b = ctx.fx.bucket(key, bucket)?;
    ctx.fx
        .manifest(b.manifest.as_deref().context("bucket without a manifest")?)
}

/// The CLI's extract modes and errors, on gpt.img (ext4, xfs, btrfs, vfat).
fn gpt_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("part/1::unpack_dir", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        checks::check_unpack(ctx, &s, &vpath(s.disk(), "part/1", b""), &m)
    });
    let s = src.clone();
    g.case("part/3::unpack_dir", move |ctx| {
        let m = manifest_of(ctx, &s, "part/3")?;
        checks::check_unpack(ctx, &s, &vpath(s.disk(), "part/3", b""), &m)
    });
    let s = src.clone();
    g.case("part/4::unpack_dir", move |ctx| {
        let m = manifest_of(ctx, &s, "part/4")?;
        checks::check_unpack(ctx, &s, &vpath(s.disk(), "part/4", b""), &m)
    });
    let s = src.clone();
    g.case("part/1::zip", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        checks::check_zip(ctx, &s, &vpath(s.disk(), "part/1", b""), &m, false, false)
    });
    let s = src.clone();
    g.case("part/4::zip", move |ctx| {
        let m = manifest_of(ctx, &s, "part/4")?;
        checks::check_zip(ctx, &s, &vpath(s.disk(), "part/4", b""), &m, false, false)
    });
    let s = src.clone();
    g.case("part/1::zip_to_stdout_zstd", move |ctx| {
        let m = sub_manifest(&manifest_of(ctx, &s, "part/1")?, b"dir");
        checks::check_zip(ctx, &s, &vpath(s.disk(), "part/1", b"dir"), &m, true, true)
    });
    let s = src.clone();
    g.case("part/2::tar_zstd", move |ctx| {
        let m = manifest_of(ctx, &s, "part/2")?;
        checks::check_tar(ctx, &s, &vpath(s.disk(), "part/2", b""), &m, true)
    });
    let s = src.clone();
    g.case("part/1::tar_subdir_to_stdout", move |ctx| {
        // A nested directory's tar through stdout; hard links inside it stay hard links
        // only where both names are inside, so compare without them.
        let full = manifest_of(ctx, &s, "part/1")?;
        let want = sub_manifest(&full, b"nested");
        let sc = ctx.scratch("tar-stdout")?;
        let f = sc.path().join("n.tar");
        let p = vpath(s.disk(), "part/1", b"nested");
        extract_to_file(ctx, &s, &p, &["--format", "tar"], &f)?
            .check()
            .with_context(|| format!("{}: extract {} --format tar > FILE", s.label, show(&p)))?;
        let x = sc.path().join("x");
        std::fs::create_dir_all(&x)?;
        sys::tool(
            "tar",
            [
                OsStr::new("-xpf"),
                f.as_os_str(),
                OsStr::new("--warning=no-unknown-keyword"),
                OsStr::new("-C"),
                x.as_os_str(),
            ],
        )?;
        let have = manifest::of_directory(&ctx.mktree(), &x.join("nested"), sc.path())?;
        manifest::ensure_same(
            &format!("{}: tar of {} via stdout", s.label, show(&p)),
            &want,
            &have,
            &Rules {
                hardlinks: false,
                ..Rules::STRICT
            },
        )
    });
    let s = src.clone();
    g.case("part/1::extract_files_stdout_sha256", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        let sc = ctx.scratch("files")?;
        // Varied files: big, sparse, empty, unicode and non-UTF-8 names, deepest, longest path.
        let mut picks: Vec<Vec<u8>> = [
            &b"data/random-5M.bin"[..],
            b"sparse-64M.bin",
            b"empty.txt",
            "ünïcødé-文件.txt".as_bytes(),
            b"bad-\xff-name.bin",
            b"latin1-caf\xe9.txt",
            b"name with spaces.txt",
            b"-leading-dash.txt",
            b"time-2100.txt",
            b"hl/two.bin",
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        let longest = m
            .values()
            .filter(|e| e.kind == 'f')
            .max_by_key(|e| e.path.len())
            .context("no files")?;
        picks.push(longest.path.clone());
        let deepest = m
            .values()
            .filter(|e| e.kind == 'f')
            .max_by_key(|e| e.path.iter().filter(|&&b| b == b'/').count())
            .context("no files")?;
        picks.push(deepest.path.clone());
        for rel in picks {
            let want = m
                .get(&rel)
                .and_then(|e| e.sha256.clone())
                .with_context(|| format!("manifest has no file {}", show(&rel)))?;
            let got = checks::sha_via_stdout(ctx, &s, &vpath(s.disk(), "part/1", &rel), sc.path())?;
            ensure!(
                got == want,
                "{}: extract {} > FILE: sha256 {got}, want {want}",
                s.label,
                show(&rel)
            );
        }
        Ok(())
    });
    let s = src.clone();
    g.case("part/1::extract_file_targets", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        let want = m[&b"data/random-1M.bin"[..]]
            .sha256
            .clone()
            .unwrap_or_default();
        let p = vpath(s.disk(), "part/1", b"data/random-1M.bin");
        let sc = ctx.scratch("targets")?;
        // To a new file name.
        let f = sc.path().join("copy.bin");
        extract_into(ctx, &s, &p, &f, &[])?.check()?;
        ensure!(
            sys::sha256_file(&f)? == want,
            "{}: extract {} FILE: wrong content",
            s.label,
            show(&p)
        );
        // Into an existing directory: DIR/<name>.
        let d = sc.path().join("dir");
        std::fs::create_dir(&d)?;
        extract_into(ctx, &s, &p, &d, &[])?.check()?;
        let inside = d.join("random-1M.bin");
        ensure!(
            inside.exists() && sys::sha256_file(&inside)? == want,
            "{}: extract {} DIR did not write DIR/random-1M.bin with the file's content",
            s.label,
            show(&p)
        );
        let entries: Vec<_> = std::fs::read_dir(&d)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        ensure!(
            entries.len() == 1,
            "{}: extract into DIR left extra files: {entries:?}",
            s.label
        );
        // `-` is stdout.
        let out = sc.path().join("dash.bin");
        let a: Vec<OsString> = vec![
            "extract".into(),
            s.path.clone().into(),
            OsStr::from_bytes(&p).into(),
            "-".into(),
        ];
        let o = ctx.cli.run_to_file(a, &out)?.check()?;
        ensure!(
            sys::sha256_file(&out)? == want,
            "{}: extract {} - did not write the file to stdout ({})",
            s.label,
            show(&p),
            o.describe()
        );
        // --zstd compresses a single file too.
        let z = sc.path().join("f.zst");
        extract_to_file(ctx, &s, &p, &["--zstd"], &z)?.check()?;
        let plain = sys::tool("zstd", [OsStr::new("-dcq"), z.as_os_str()])?;
        ensure!(
            sys::sha256_bytes(&plain.stdout)? == want,
            "{}: extract {} --zstd does not decompress to the file",
            s.label,
            show(&p)
        );
        Ok(())
    });
    let s = src.clone();
    g.case("overwrite_refused", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        let sc = ctx.scratch("overwrite")?;
        // A file target.
        let p = vpath(s.disk(), "part/1", b"README.txt");
        let f = sc.path().join("README.txt");
        std::fs::write(&f, b"old content\n")?;
        let o = extract_into(ctx, &s, &p, &f, &[])?;
        expect_error(o, 1, &[&f.to_string_lossy()])
            .context("extract onto an existing file without --overwrite")?;
        ensure!(
            std::fs::read(&f)? == b"old content\n",
            "the refused extract changed {}",
            f.display()
        );
        extract_into(ctx, &s, &p, &f, &["--overwrite"])?.check()?;
        let want = m[&b"README.txt"[..]].sha256.clone().unwrap_or_default();
        ensure!(
            sys::sha256_file(&f)? == want,
            "extract --overwrite did not replace {}",
            f.display()
        );
        // A directory unpacked onto an existing file inside TARGET.
        let d = sc.path().join("unpack");
        std::fs::create_dir(&d)?;
        std::fs::write(d.join("file"), b"old\n")?;
        let p = vpath(s.disk(), "part/1", b"dir");
        let o = extract_into(ctx, &s, &p, &d, &[])?;
        expect_error(o, 1, &[&d.join("file").to_string_lossy()])
            .context("unpacking onto an existing file without --overwrite")?;
        ensure!(
            std::fs::read(d.join("file"))? == b"old\n",
            "the refused unpack changed TARGET/file"
        );
        extract_into(ctx, &s, &p, &d, &["--overwrite"])?.check()?;
        let want = m[&b"dir/file"[..]].sha256.clone().unwrap_or_default();
        ensure!(
            sys::sha256_file(&d.join("file"))? == want,
            "unpack --overwrite did not replace TARGET/file"
        );
        Ok(())
    });
    let s = src.clone();
    g.case("errors", move |ctx| {
        let d = s.disk().to_string();
        let sc = ctx.scratch("errors")?;
        // Unknown path inside a bucket: the daemon's message names it.
        let p = vpath(&d, "part/1", b"does/not-exist.txt");
        expect_error(
            ctx.cli.list_out(&s.path, &p, "text")?,
            1,
            &[&show(&p), "no such file"],
        )?;
        let t = sc.path().join("never.txt");
        expect_error(
            extract_into(ctx, &s, &p, &t, &[])?,
            1,
            &[&show(&p), "no such file"],
        )?;
        ensure!(!t.exists(), "a failed extract left {}", t.display());
        let left: Vec<_> = std::fs::read_dir(sc.path())?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        ensure!(
            left.is_empty(),
            "a failed extract left files in the target directory: {left:?}"
        );
        // Unknown disk, bucket type, bucket.
        expect_error(
            ctx.cli.list_out(&s.path, b"/nodisk", "text")?,
            1,
            &["nodisk"],
        )?;
        expect_error(
            ctx.cli
                .list_out(&s.path, format!("/{d}/raw/raw").as_bytes(), "text")?,
            1,
            &["raw"],
        )?;
        expect_error(
            ctx.cli
                .list_out(&s.path, format!("/{d}/part/9").as_bytes(), "text")?,
            1,
            &["part/9"],
        )?;
        // A file used as a directory.
        let p = vpath(&d, "part/1", b"README.txt/x");
        expect_error(
            ctx.cli.list_out(&s.path, &p, "text")?,
            1,
            &["not a directory"],
        )?;
        // A directory without a target, and --zstd when unpacking.
        let p = vpath(&d, "part/1", b"dir");
        let o = ctx.cli.run([
            OsStr::new("extract"),
            s.path.as_os_str(),
            OsStr::from_bytes(&p),
        ])?;
        expect_error(o, 1, &["directory"])?;
        let o = extract_into(ctx, &s, &p, &sc.path().join("z"), &["--zstd"])?;
        expect_error(o, 1, &["--zstd"])?;
        Ok(())
    });
    let s = src.clone();
    g.case("reuse_without_boot", move |ctx| {
        // The group's VM is up: another call reuses it, fast, same pid.
        let before = ctx.cli.vms_for(&s.path)?;
        let o = ctx.cli.list_out(&s.path, b"/", "json")?.check()?;
        let after = ctx.cli.vms_for(&s.path)?;
        ensure!(
            !o.stderr.contains(STARTED_VM),
            "a call on a running source booted: {}",
            o.describe()
        );
        ensure!(
            before.len() == 1 && after.len() == 1 && before[0]["pid"] == after[0]["pid"],
            "status before/after a second call: {before:?} / {after:?}"
        );
        ensure!(
            o.elapsed < Duration::from_secs(3),
            "a call on a running VM took {:.2} s",
            o.elapsed.as_secs_f64()
        );
        Ok(())
    });
}

fn dirty_ext4_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("raw/raw::journal_not_replayed", move |ctx| {
        let m = manifest_of(ctx, &s, "raw/raw")?;
        let want = m[&b"dirty-marker.txt"[..]]
            .sha256
            .clone()
            .unwrap_or_default();
        let replayed = sys::sha256_file(&ctx.fx.path("manifests/dirty-ext4.after-replay.bin"))?;
        let sc = ctx.scratch("dirty")?;
        let got = checks::sha_via_stdout(
            ctx,
            &s,
            &vpath(s.disk(), "raw/raw", b"dirty-marker.txt"),
            sc.path(),
        )?;
        ensure!(
            got != replayed,
            "dirty-ext4: dirty-marker.txt has the content of a journal replay"
        );
        ensure!(
            got == want,
            "dirty-ext4: dirty-marker.txt sha256 {got}, want {want} (before the crash)"
        );
        Ok(())
    });
}

fn store_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("status_shows_snapshot", move |ctx| {
        let vms = ctx.cli.vms_for(&s.path)?;
        ensure!(
            vms.len() == 1,
            "{}: status lists {} VMs for the snapshot",
            s.label,
            vms.len()
        );
        let conf = s.path.canonicalize()?.join("guest.conf");
        ensure!(
            vms[0]["guest_config"].as_str() == Some(conf.to_string_lossy().as_ref()),
            "{}: status guest_config {}, want {}",
            s.label,
            vms[0]["guest_config"],
            conf.display()
        );
        let imgs: Vec<&str> = vms[0]["images"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ensure!(
            imgs.len() == s.disks.len(),
            "{}: status images {imgs:?}",
            s.label
        );
        let disks: Vec<&str> = vms[0]["disks"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["name"].as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = s.disks.keys().map(String::as_str).collect();
        ensure!(
            disks == want,
            "{}: status disks {disks:?}, want {want:?}",
            s.label
        );
        Ok(())
    });
    if s_is(src, "qemu-1700003600") {
        let s = src.clone();
        g.case("incremental_chain_content", move |ctx| {
            let sc = ctx.scratch("incr")?;
            let m = ctx.fx.manifest("manifests/full-incr.ext4.json")?;
            let base = ctx.fx.manifest("manifests/full.ext4.json")?;
            for (rel, man) in [
                (&b"new-in-incremental.txt"[..], &m),
                (b"README.txt", &base),
                (b"data/random-5M.bin", &base),
            ] {
                let want = man[rel].sha256.clone().unwrap_or_default();
                let got =
                    checks::sha_via_stdout(ctx, &s, &vpath(s.disk(), "raw/raw", rel), sc.path())?;
                ensure!(
                    got == want,
                    "{}: {}: sha256 {got}, want {want}",
                    s.label,
                    show(rel)
                );
            }
            Ok(())
        });
    }
    if s_is(src, "100/qemu-1700000000") {
        let s = src.clone();
        g.case("full_lacks_incremental_file", move |ctx| {
            let p = vpath(s.disk(), "raw/raw", b"new-in-incremental.txt");
            expect_error(ctx.cli.list_out(&s.path, &p, "json")?, 1, &["no such file"])?;
            Ok(())
        });
    }
    if src.disks.len() > 1 {
        let s = src.clone();
        g.case("a_file_from_each_disk", move |ctx| {
            let sc = ctx.scratch("two-disks")?;
            let full = ctx.fx.manifest("manifests/full.ext4.json")?;
            let want = full[&b"dir/file"[..]].sha256.clone().unwrap_or_default();
            for p in [
                vpath("drive-scsi0", "part/1", b"dir/file"),
                vpath("drive-scsi1", "part/5", b"dir/file"),
            ] {
                let got = checks::sha_via_stdout(ctx, &s, &p, sc.path())?;
                ensure!(
                    got == want,
                    "{}: {}: sha256 {got}, want {want}",
                    s.label,
                    show(&p)
                );
            }
            Ok(())
        });
    }
}

fn s_is(src: &Src, suffix: &str) -> bool {
    src.label.ends_with(suffix)
}

/// Usage errors exit 2 without touching any VM.
fn usage() -> G {
    let mut g = G::new("usage", 1);
    g.case("exit_code_2", |ctx| {
        let cases: [&[&str]; 9] = [
            &[],
            &["list"],
            &["extract", "x.img"],
            &["list", "x.img", "/", "--output-format", "xml"],
            &["extract", "x.img", "/d/part/1", "--format", "rar"],
            &["stop"],
            &["stop", "name", "--all"],
            &["frobnicate"],
            &["list", "x.img", "--no-such-flag"],
        ];
        for a in cases {
            let o = ctx.cli.run(a)?;
            ensure!(
                o.code == Some(2),
                "`file-restore {}` should be a usage error (exit 2): {}",
                a.join(" "),
                o.describe()
            );
            ensure!(
                o.stderr.contains("Usage") || o.stderr.contains("--help"),
                "`file-restore {}`: no usage text or --help hint on stderr: {}",
                a.join(" "),
                o.describe()
            );
        }
        let o = ctx.cli.run(["--help"])?.check()?;
        for cmd in ["list", "extract", "status", "stop"] {
            ensure!(
                o.stdout_str().contains(cmd),
                "--help does not mention {cmd}"
            );
        }
        Ok(())
    });
    g
}

/// Every malicious backing chain is refused before a VM starts.
fn evil(ctx: &Ctx) -> G {
    let mut g = G::new("evil_store", 2);
    let snaps: Vec<Value> = ctx
        .fx
        .snapshots()
        .into_iter()
        .filter(|s| s["expect"] == "refused")
        .collect();
    for snap in snaps {
        let dir = snap["dir"].as_str().unwrap_or_default().to_string();
        let key = snap["disks"]["drive-scsi0"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = dir.split('/').nth(1).unwrap_or("?").to_string();
        let (d, k) = (dir.clone(), key.clone());
        g.case(format!("{id}_snapshot_dir"), move |ctx| {
            refused(ctx, &d, &k)
        });
        if id == "200" || id == "201" || id == "205" {
            g.case(format!("{id}_image_file"), move |ctx| {
                refused(ctx, &key, &key)
            });
        }
    }
    g
}

fn refused(ctx: &Ctx, source: &str, image_key: &str) -> Result<()> {
    let img = ctx.fx.image(image_key)?;
    let named = img["backing"]["file"]
        .as_str()
        .or_else(|| img["data_file"].as_str())
        .context("evil image without backing or data_file in fixtures.json")?
        .to_string();
    let path = ctx.fx.path(source);
    let o = ctx.cli.run([OsStr::new("list"), path.as_os_str()])?;
    ensure!(
        !o.stderr.contains(STARTED_VM),
        "{source}: a VM was started: {}",
        o.describe()
    );
    expect_error(o, 1, &[&named, "refused"])
        .with_context(|| format!("{source} ({})", img["note"]))?;
    checks::ensure_no_vm(ctx, &path, source)
}

/// Sources that are not usable disk images: clear errors, no VM left.
fn bad_sources() -> Vec<G> {
    let mut v = Vec::new();
    for (key, name) in [
        ("truncated.qcow2", "truncated"),
        ("not-an-image.txt", "not_an_image"),
    ] {
        let mut g = G::new(format!("bad_source::{name}"), 10);
        g.case("clear_error_no_vm", move |ctx| {
            let path = ctx.fx.path(key);
            let o = ctx
                .cli
                .run([OsStr::new("list"), path.as_os_str(), OsStr::new("/")])?;
            let r = expect_error(o, 1, &[key])
                .with_context(|| format!("list {key} (fixtures.json: expect error)"));
            let left = checks::ensure_no_vm(ctx, &path, key);
            r?;
            left
        });
        let k = key.to_string();
        g.teardown = Some(Box::new(move |ctx: &Ctx| {
            ctx.cli.stop_vms_for(&ctx.fx.path(&k))?;
            Ok(())
        }));
        v.push(g);
    }
    let mut g = G::new("bad_source::missing_file", 1);
    g.case("clear_error", |ctx| {
        let p = ctx.work.join("no-such-image.qcow2");
        let o = ctx.cli.run([OsStr::new("list"), p.as_os_str()])?;
        ensure!(
            !o.stderr.contains(STARTED_VM),
            "a VM was started for a missing file"
        );
        expect_error(o, 1, &["no-such-image.qcow2"])?;
        Ok(())
    });
    v.push(g);
    v
}

/// The file name of `p`, as `status` shows it in `label`.
fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn one_vm(ctx: &Ctx, src: &Path, what: &str) -> Result<Value> {
    let vms = ctx.cli.vms_for(src)?;
    ensure!(
        vms.len() == 1,
        "{what}: status lists {} VMs for {}: {vms:?}",
        vms.len(),
        src.display()
    );
    Ok(vms.into_iter().next().unwrap_or_default())
}

/// Reuse, status, kill -9 and restart, stop by name and by SOURCE, on a private copy.
fn lifecycle() -> G {
    let mut g = G::new("vm_lifecycle", 40);
    let name = "life.img";
    let at = |ctx: &Ctx| checks::private_copy(ctx, "raw-ext4.img", name);
    g.case("first_call_boots_second_reuses", move |ctx| {
        let src = at(ctx)?;
        let first = ctx.cli.list_out(&src, b"/life/raw/raw", "json")?.check()?;
        ensure!(
            first.stderr.contains(STARTED_VM),
            "the first call on a new source did not say it started a VM: {}",
            first.describe()
        );
        let vm1 = one_vm(ctx, &src, "after the first call")?;
        let second = ctx.cli.list_out(&src, b"/life/raw/raw", "json")?.check()?;
        ensure!(
            !second.stderr.contains(STARTED_VM),
            "the second call booted again: {}",
            second.describe()
        );
        ensure!(
            second.stdout == first.stdout,
            "the second listing differs from the first"
        );
        let vm2 = one_vm(ctx, &src, "after the second call")?;
        ensure!(
            vm1["pid"] == vm2["pid"],
            "the VM pid changed: {} → {}",
            vm1["pid"],
            vm2["pid"]
        );
        ensure!(
            second.elapsed < Duration::from_secs(3) && second.elapsed < first.elapsed,
            "the second call took {:.2} s (the first, with the boot, {:.2} s)",
            second.elapsed.as_secs_f64(),
            first.elapsed.as_secs_f64()
        );
        Ok(())
    });
    g.case("status_text_and_json", move |ctx| {
        let src = at(ctx)?;
        ctx.cli.list_out(&src, b"/", "json")?.check()?;
        let vm = one_vm(ctx, &src, "status")?;
        let canon = src.canonicalize()?;
        for f in [
            "name",
            "pid",
            "addr",
            "accel",
            "uptime",
            "timeout_left",
            "images",
            "disks",
        ] {
            ensure!(
                vm.get(f).is_some_and(|v| !v.is_null()),
                "status JSON lacks {f:?}: {vm}"
            );
        }
        let pid = vm["pid"].as_i64().context("pid is not a number")?;
        ensure!(
            !sys::is_dead(pid as i32),
            "status pid {pid} is not a running process"
        );
        ensure!(
            matches!(vm["accel"].as_str(), Some("tcg" | "kvm")),
            "accel {}",
            vm["accel"]
        );
        let left = vm["timeout_left"].as_u64().context("timeout_left")?;
        ensure!(left > 0 && left <= 600, "timeout_left {left}");
        ensure!(
            vm["images"] == serde_json::json!([canon.to_string_lossy()]),
            "images {} want [{}]",
            vm["images"],
            canon.display()
        );
        ensure!(
            vm["disks"][0]["name"] == "life"
                && vm["disks"][0]["buckets"][0]["path"] == "raw/raw"
                && vm["disks"][0]["buckets"][0]["fstype"] == "ext4",
            "disks {}",
            vm["disks"]
        );
        let name = vm["name"].as_str().unwrap_or_default().to_string();
        let text = ctx.cli.run(["status"])?.check()?.stdout_str();
        for want in [
            name.clone(),
            format!("pid {pid}"),
            canon.to_string_lossy().into_owned(),
            "raw/raw ext4".into(),
        ] {
            ensure!(text.contains(&want), "status text lacks {want:?}:\n{text}");
        }
        let pretty = ctx
            .cli
            .run(["status", "--output-format", "json-pretty"])?
            .check()?;
        let v: Value = serde_json::from_slice(&pretty.stdout)?;
        ensure!(
            v.as_array().is_some_and(|a| a
                .iter()
                .any(|r| r["name"] == name.as_str() && r["pid"] == pid)),
            "status json-pretty lacks the VM: {v}"
        );
        Ok(())
    });
    g.case("kill9_qemu_then_clean_restart", move |ctx| {
        let src = at(ctx)?;
        ctx.cli.list_out(&src, b"/", "json")?.check()?;
        let vm = one_vm(ctx, &src, "before the kill")?;
        let pid = vm["pid"].as_i64().context("pid")? as i32;
        let name = vm["name"].as_str().unwrap_or_default().to_string();
        let entry = ctx.cli.map_entry(&name);
        let sidecar = entry.as_ref().and_then(|e| e["vm"]["sidecar_pid"].as_i64()).map(|p| p as i32);
        let run_dir = entry.as_ref().and_then(|e| e["vm"]["run_dir"].as_str().map(str::to_string));
        sys::kill9(pid)?;
        ensure!(sys::wait_dead(pid, Duration::from_secs(10)), "QEMU {pid} still runs after kill -9");
        let o = ctx.cli.list_out(&src, b"/life/raw/raw", "json")?;
        let o = o.check().context("list after kill -9 of the VM")?;
        let names_old = o.stderr.lines().any(|l| {
            !l.contains(STARTED_VM) && (l.contains(&format!("pid {pid}")) || l.contains(&format!("({pid})")) || l.contains(&name))
        });
        ensure!(
            names_old && o.stderr.contains(STARTED_VM),
            "after kill -9 of pid {pid}, list should say on stderr that VM {name} is gone and start a new one: {}",
            o.describe()
        );
        let entries = file_restore_tests::cli::parse_listing(b"/life/raw/raw", &o.stdout)?;
        let want = manifest::children(&ctx.fx.manifest("manifests/full.ext4.json")?, b"").len();
        ensure!(entries.len() == want, "the new VM lists {} root entries, want {want}", entries.len());
        let vm2 = one_vm(ctx, &src, "after the restart")?;
        ensure!(vm2["pid"].as_i64() != Some(pid as i64), "status still shows the killed pid {pid}");
        if let Some(sc) = sidecar {
            ensure!(
                sys::wait_dead(sc, Duration::from_secs(10)),
                "the killed VM's vhost-device-vsock sidecar {sc} still runs"
            );
        }
        if let Some(rd) = run_dir {
            let left = sys::vm_processes_mentioning(&rd);
            ensure!(left.is_empty(), "processes of the killed VM are left: {left:?}");
        }
        Ok(())
    });
    g.case("stop_by_name", move |ctx| {
        let src = at(ctx)?;
        ctx.cli.list_out(&src, b"/", "json")?.check()?;
        let vm = one_vm(ctx, &src, "before stop")?;
        let pid = vm["pid"].as_i64().context("pid")? as i32;
        let name = vm["name"].as_str().unwrap_or_default().to_string();
        let o = ctx.cli.run(["stop", name.as_str()])?.check()?;
        ensure!(
            o.stderr.contains(&name),
            "stop does not say what it stopped: {}",
            o.describe()
        );
        ensure!(
            sys::wait_dead(pid, Duration::from_secs(15)),
            "QEMU {pid} still runs 15 s after `stop {name}`"
        );
        let start = Instant::now();
        loop {
            let left = sys::vm_processes_mentioning(&src.to_string_lossy());
            if left.is_empty() {
                break;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(10),
                "processes left after stop: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ensure!(
            ctx.cli.vms_for(&src)?.is_empty(),
            "status still lists {name} after stop"
        );
        let o = ctx.cli.run(["stop", name.as_str()])?;
        expect_error(o, 1, &[&name]).context("stopping a VM that is no longer running")?;
        Ok(())
    });
    g.case("stop_by_source", move |ctx| {
        let src = at(ctx)?;
        ctx.cli.list_out(&src, b"/", "json")?.check()?;
        let vm = one_vm(ctx, &src, "before stop")?;
        let pid = vm["pid"].as_i64().context("pid")? as i32;
        let name = vm["name"].as_str().unwrap_or_default().to_string();
        ensure!(
            vm["label"] == name_of(&src)
                && vm["source"] == src.canonicalize()?.to_string_lossy().as_ref(),
            "status label {} / source {}, want {} / the canonical path",
            vm["label"],
            vm["source"],
            name_of(&src)
        );
        // SOURCE spelled as `list` got it, not as the map key.
        let o = ctx
            .cli
            .run([OsStr::new("stop"), src.as_os_str()])?
            .check()?;
        ensure!(
            o.stderr.contains(&name),
            "stop SOURCE does not say which VM it stopped: {}",
            o.describe()
        );
        ensure!(
            sys::wait_dead(pid, Duration::from_secs(15)),
            "QEMU {pid} still runs 15 s after `stop {}`",
            src.display()
        );
        ensure!(
            ctx.cli.vms_for(&src)?.is_empty(),
            "status still lists {name} after stop by SOURCE"
        );
        let o = ctx.cli.run([OsStr::new("stop"), src.as_os_str()])?;
        expect_error(o, 1, &[&src.to_string_lossy(), "no restore VM is running"])
            .context("stop SOURCE with no VM for it")?;
        let missing = ctx.work.join("no-such-source.qcow2");
        let o = ctx.cli.run([OsStr::new("stop"), missing.as_os_str()])?;
        expect_error(o, 1, &[&missing.to_string_lossy(), "no running VM named"])
            .context("stop of something that is neither a VM nor a SOURCE")?;
        Ok(())
    });
    g.teardown = Some(Box::new(move |ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.work.join("sources").join(name))?;
        Ok(())
    }));
    g
}

/// 8 calls at once on a new source end with exactly one VM.
fn parallel() -> G {
    let mut g = G::new("parallel", 20);
    let name = "par.img";
    g.case("eight_lists_one_vm", move |ctx| {
        let src = checks::private_copy(ctx, "raw-ext4.img", name)?;
        let outs: Vec<Result<sys::Output>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| sc.spawn(|| ctx.cli.list_out(&src, b"/par/raw/raw", "json")))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
                })
                .collect()
        });
        let outs: Vec<sys::Output> = outs.into_iter().collect::<Result<_>>()?;
        for o in &outs {
            ensure!(
                o.code == Some(0),
                "one of 8 parallel calls failed: {}",
                o.describe()
            );
        }
        ensure!(
            outs.iter().all(|o| o.stdout == outs[0].stdout),
            "the 8 parallel listings differ"
        );
        let boots = outs
            .iter()
            .filter(|o| o.stderr.contains(STARTED_VM))
            .count();
        ensure!(
            boots == 1,
            "8 parallel calls on a new source started {boots} VMs"
        );
        one_vm(ctx, &src, "after 8 parallel calls")?;
        let qemus: Vec<_> = sys::vm_processes_mentioning(&src.to_string_lossy())
            .into_iter()
            .filter(|p| p.cmdline.contains("qemu-system"))
            .collect();
        ensure!(
            qemus.len() <= 1,
            "{} QEMU processes for one source: {qemus:?}",
            qemus.len()
        );
        Ok(())
    });
    g.teardown = Some(Box::new(move |ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.work.join("sources").join(name))?;
        Ok(())
    }));
    g
}
