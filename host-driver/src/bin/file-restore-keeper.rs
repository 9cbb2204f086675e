//! `file-restore-keeper`: started by the launcher next to every restore VM,
//! detached and as the user; reads the VM's record (JSON) on stdin and keeps
//! the VM's lifetime and console log bounded (see `file_restore::vm::keeper`).
//! Not meant to be run by hand.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use file_restore::vm::keeper::{self, KeeperOptions};

/// Keeps one restore VM's lifetime and console log bounded. Started by
/// file-restore with the VM's record on stdin.
#[derive(Parser)]
#[command(name = "file-restore-keeper", version)]
struct Args {
    /// Stop the VM after this many seconds without use.
    #[arg(long, value_name = "SECS")]
    idle_limit: u64,
    /// Largest console log in bytes.
    #[arg(long, value_name = "BYTES")]
    console_cap: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let vm = match keeper::read_vm(std::io::stdin().lock()) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("file-restore-keeper: cannot read the VM's record on stdin: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = KeeperOptions {
        idle_limit: Duration::from_secs(args.idle_limit),
        console_cap: args.console_cap,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("file-restore-keeper: cannot start its runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(keeper::keep(&vm, &opts));
    ExitCode::SUCCESS
}
