//! Calls at once on a new source end with exactly one VM.

use super::{one_vm, G};
use crate::checks;
use crate::Ctx;
use anyhow::{ensure, Result};
use file_restore_tests::cli::STARTED_VM;
use file_restore_tests::sys;

/// 8 calls at once on a new source end with exactly one VM.
pub fn parallel() -> G {
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
