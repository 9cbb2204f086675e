//! VM lifecycle: reuse, status, kill -9 and restart, stop by name and by
//! SOURCE, and QEMU killed in the middle of an extract.

use super::{name_of, one_vm, G};
use crate::checks::{self, expect_error};
use crate::Ctx;
use anyhow::{ensure, Context};
use file_restore_tests::cli::STARTED_VM;
use file_restore_tests::manifest;
use file_restore_tests::sys;
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// Reuse, status, kill -9 and restart, stop by name and by SOURCE, on a private copy.
pub fn lifecycle() -> G {
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
    // `… | head` that has gone: every command ends by SIGPIPE, as Unix tools
    // do, with nothing on stderr (no panic, no backtrace, no error line), and
    // the VM stays.
    g.case("closed_pipe_ends_quietly", move |ctx| {
        let src = at(ctx)?;
        let listed = ctx.cli.list(&src, b"/life/raw/raw")?;
        let file = listed
            .iter()
            .find(|e| e.kind == 'f' && e.size.is_some_and(|s| s > 0))
            .context("no regular file at the root of life.img")?
            .path
            .clone();
        let src_arg = src.as_os_str();
        let file_arg = OsStr::from_bytes(&file);
        let calls: [Vec<&OsStr>; 5] = [
            vec!["completions".as_ref(), "bash".as_ref()],
            vec!["list".as_ref(), src_arg, "/life/raw/raw".as_ref()],
            vec![
                "list".as_ref(),
                src_arg,
                "/".as_ref(),
                "--output-format".as_ref(),
                "json".as_ref(),
            ],
            vec!["status".as_ref()],
            vec!["extract".as_ref(), src_arg, file_arg],
        ];
        for args in calls {
            let mut c = ctx.cli.command();
            c.args(&args);
            let out = sys::run(c, None, sys::Stdout::ClosedPipe, Duration::from_secs(60))?;
            ctx.cli.account(&out);
            ensure!(
                out.signal == Some(libc::SIGPIPE) && out.stderr.trim().is_empty(),
                "want a quiet end by SIGPIPE: {}",
                out.describe()
            );
        }
        one_vm(ctx, &src, "after the closed pipes")?;
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

/// QEMU killed in the middle of a 256 MiB extract: exit 1, an error naming
/// the target, and neither the target nor a temporary file left behind.
pub fn broken_transfer() -> G {
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
