//! The command line of `file-restore`: one clap definition that the parser,
//! the shell completions ([`completions`]) and the man pages ([`man`], run
//! by `file-restore-man`) are all generated from. In the library so both
//! binaries share it. A front end beside `web`: imports nothing from the
//! crate (the binaries map it onto `driver` and `manager`).

// The doc comments below are clap's help text (`luks/<name>` and the like
// are meant literally), not HTML.
#![allow(rustdoc::invalid_html_tags)]

pub mod completions;
pub mod man;
pub mod parse;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// `0.1.0 (abc1234)`: the crate version and the git commit it was built
/// from (`-dirty` with uncommitted changes; no commit outside a git tree).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    env!("FILE_RESTORE_COMMIT_SUFFIX")
);

const ABOUT: &str = "Restore single files from VM disk images and backups, safely: the disks are \
attached read-only to a small QEMU VM and never mounted on the host.";

const LONG_ABOUT: &str = "Restore single files from VM disk images and backups, safely.

The disks of SOURCE are attached read-only to a small QEMU micro-VM whose daemon mounts
partitions on demand; this host only ever sees bytes over vsock. The first call on a
SOURCE starts its VM (a few seconds under TCG); later calls reuse it until it has been
idle for 10 minutes, or until `file-restore stop`.

SOURCE is a disk image in any format QEMU reads (raw, qcow2, vmdk, vhdx, ...), a
directory holding one VM's disk images (a backup snapshot such as
<store>/<vmid>/qemu-<epoch>/drive-scsi0.qcow2; each disk is named by its file stem),
or an nbd:// / nbd+unix:// URI. The format comes from the file extension (.raw, .qcow2,
.vmdk, .vhd, .vhdx, .vdi, .qed); only .img and extension-less files are probed, and a
probed image may not reference other files (backing files, vmdk extents).

PATH inside the VM: /<disk>/<bucket-type>/<bucket>/<path inside the filesystem>, e.g.
/drive-scsi0/part/2/etc/passwd. Shorter paths list what exists: / the disks, /<disk> its
bucket types (part, raw), /<disk>/part the partitions with their filesystem types.

Logging: warnings and errors go to stderr; -v adds informational log lines, -vv debug
ones. RUST_LOG (env_logger syntax, e.g. RUST_LOG=file_restore=debug) overrides both.
--quiet prints no progress bar and no informational lines (VM started, file written);
errors are still printed.

Exit codes: 0 success, 1 error, 2 usage.";

/// The command line.
#[derive(Parser)]
#[command(name = "file-restore", version = VERSION, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Guest kernel (default: FILE_RESTORE_KERNEL, the install dir, the build dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Base initramfs (default: FILE_RESTORE_INITRAMFS, the install dir, the build dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub initramfs: Option<PathBuf>,
    /// Accelerator for new VMs: kvm when it really works, else tcg.
    #[arg(long, global = true, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// vsock transport for new VMs: kernel when /dev/vhost-vsock opens, else vhost-user.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,
    /// Guest RAM of new VMs in MiB (default: 256, 32 more per disk beyond 4, at most
    /// 1024). Raise it for a ZFS pool whose import says the VM's RAM is not enough; a
    /// VM already running for SOURCE keeps its RAM (`stop` it first).
    #[arg(long, global = true, value_name = "MIB", value_parser = clap::value_parser!(u32).range(128..=4096))]
    pub memory: Option<u32>,
    /// More log output on stderr (-v: info, -vv: debug; RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bar and no informational messages on stderr; errors are still printed.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Cmd {
    /// List disks, buckets, or a directory inside a bucket.
    List {
        /// Image file, snapshot directory or nbd:// URI.
        source: String,
        /// Path to list (default: / , the disks).
        path: Option<OsString>,
        /// text: one line per entry; json / json-pretty: the entry array (docs/API.md).
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output_format: OutputFormat,
        /// Give up after this many seconds (VM start included).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Passphrases for LUKS containers and BitLocker volumes (a user password or
        /// a 48-digit recovery password), one per line: each is tried on every
        /// locked container before PATH is read, and an opened container's content
        /// appears as the bucket luks/<name> or bitlocker/<name>. Sent to the VM only over its
        /// authenticated API (never argv, environment or logs).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Extract a file or directory.
    ///
    /// A file goes to TARGET (a file name, or an existing directory to put it in)
    /// or to stdout (TARGET omitted or -). A directory without --format is unpacked
    /// into TARGET (created if missing): entries never land outside it, symlinks are
    /// created but never followed, mode (less the umask and set-id bits) and mtime
    /// are kept, files belong to you, device nodes and FIFOs are skipped, and
    /// directories that already exist keep their mode and times (--same-owner
    /// restores owners, set-id bits and special files). With --format zip|tar the
    /// archive itself goes to TARGET or stdout.
    Extract {
        /// Image file, snapshot directory or nbd:// URI.
        source: String,
        /// Path of the file or directory inside the VM.
        path: OsString,
        /// Where to write (default: stdout for files and archives).
        target: Option<PathBuf>,
        /// Write an archive of PATH instead of unpacking it.
        #[arg(long, value_enum)]
        format: Option<ArchiveFormat>,
        /// Compress the archive (or file) with zstd in the VM.
        #[arg(long)]
        zstd: bool,
        /// Replace existing files in TARGET.
        #[arg(long)]
        overwrite: bool,
        /// When unpacking: restore the image's owners (as root), set-id bits,
        /// device nodes (as root) and FIFOs, and modes without the umask.
        #[arg(long)]
        same_owner: bool,
        /// Passphrases for LUKS containers and BitLocker volumes (a user password or
        /// a 48-digit recovery password), one per line: each is tried on every
        /// locked container before PATH is read, and an opened container's content
        /// appears as the bucket luks/<name> or bitlocker/<name>. Sent to the VM only over its
        /// authenticated API (never argv, environment or logs).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Search for files below PATH (default /: every disk and every bucket that opens).
    ///
    /// The walk runs in the VM: symlinks are not followed, no other filesystem is
    /// entered, and a bucket that cannot be searched (locked, no filesystem, a failed
    /// mount) is reported on stderr and skipped. Filters all hold together (AND);
    /// several --name/--iname patterns are alternatives (OR). Each match is printed as
    /// it is found: type, size, mtime (UTC) and the whole PATH to give `extract`.
    /// The search stops at --max-results matches and then says so on stderr.
    ///
    /// Examples: `file-restore find vm.qcow2 --iname '*.odt'`;
    /// `file-restore find vm.qcow2 /drive-scsi0/part/2/home --newer 7d --min-size 1M`;
    /// `file-restore find vm.qcow2 --regex '^/etc/.*\.conf$' --output-format jsonl`.
    Find {
        /// Image file, snapshot directory or nbd:// URI.
        source: String,
        /// Where to search (a disk, a bucket or a directory; default: /).
        path: Option<OsString>,
        /// Shell glob matched against the name (`*`, `?`, `[a-z]`, `{a,b}`); repeatable.
        #[arg(long = "name", value_name = "GLOB")]
        names: Vec<String>,
        /// As --name, ignoring case; repeatable.
        #[arg(long = "iname", value_name = "GLOB")]
        inames: Vec<String>,
        /// Regular expression (Rust regex syntax) searched for in the path inside its
        /// bucket (`/home/alice/report.odt`); anchor with ^…$ to match all of it.
        #[arg(long, value_name = "RE")]
        regex: Option<String>,
        /// Only this type: f (regular file), d (directory), l (symlink).
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        entry_type: Option<FindType>,
        /// Only regular files of at least SIZE bytes (units k, M, G, T: powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = parse::size)]
        min_size: Option<u64>,
        /// Only regular files of at most SIZE bytes (units k, M, G, T).
        #[arg(long, value_name = "SIZE", value_parser = parse::size)]
        max_size: Option<u64>,
        /// Only entries modified after WHEN: a UTC date (2024-01-31, 2024-01-31T08:00),
        /// @<epoch seconds>, or a duration back from now (90s, 30m, 12h, 7d, 2w).
        #[arg(long, value_name = "WHEN", value_parser = parse::time)]
        newer: Option<i64>,
        /// Only entries modified before WHEN (as --newer).
        #[arg(long, value_name = "WHEN", value_parser = parse::time)]
        older: Option<i64>,
        /// Stop after N matches (1 to 1000000).
        #[arg(long, value_name = "N", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_results: u64,
        /// text: a line per match; json: one array of entries (docs/API.md, with a
        /// `path` field); jsonl: one entry per line, printed as found.
        #[arg(long, value_enum, default_value_t = FindFormat::Text)]
        output_format: FindFormat,
        /// Give up after this many seconds (VM start included; default 3600).
        #[arg(long, value_name = "SECS", default_value_t = 3600)]
        timeout: u64,
        /// Passphrases for LUKS containers and BitLocker volumes, one per line, tried
        /// before the search (as for `list`), so their content is searched too.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Show one PATH across snapshots: whether it exists, its size, mtime and
    /// (--hash) content hash in each, newest first, and where it changed.
    ///
    /// Each SOURCE is an image, a snapshot directory, an nbd:// URI, or a VM's
    /// directory of snapshots (<store>/<vmid>, holding <kind>-<epoch>/ directories),
    /// which stands for all its snapshots. VMs are started as needed, --jobs at a
    /// time, and the ones this command started are stopped afterwards. A snapshot
    /// that cannot be read is a row with its error; the exit code is 0 when at least
    /// one row has no error. A row is marked changed (`*`) when it differs from the
    /// next older row: by content with --hash, else by type, size or mtime.
    ///
    /// Example: `file-restore versions /backup/100 --path /drive-scsi0/part/2/etc/fstab --hash`.
    Versions {
        /// SOURCEs to compare (a VM's snapshot directory stands for all its snapshots).
        #[arg(required = true, value_name = "SOURCE")]
        sources: Vec<String>,
        /// The path to look up in each, as `list` takes it (/<disk>/<type>/<bucket>/…).
        #[arg(long, value_name = "PATH")]
        path: OsString,
        /// Compute each regular file's SHA-256 in its VM (reads the whole file there).
        #[arg(long)]
        hash: bool,
        /// VMs at a time (default: one per core, as many as free memory holds, at most 8).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
        jobs: Option<u64>,
        /// text, json (an array of rows, docs/API.md) or json-pretty.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output_format: OutputFormat,
    },
    /// Show running restore VMs.
    Status {
        /// text, json or json-pretty (the JSON is described in docs/API.md).
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output_format: OutputFormat,
    },
    /// Stop a restore VM, by the name `status` shows or by its SOURCE, or all of them.
    ///
    /// NAME|SOURCE is first looked up as a VM name; otherwise it is read as a SOURCE
    /// exactly as `list` reads it (an image, a snapshot directory or an nbd:// URI)
    /// and every VM serving that SOURCE is stopped.
    Stop {
        /// The VM's name, or the SOURCE it serves.
        #[arg(
            value_name = "NAME|SOURCE",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        name: Option<String>,
        /// Stop every VM of this user.
        #[arg(long)]
        all: bool,
    },
    /// Serve a local web UI for SOURCEs and the images under --root directories.
    ///
    /// Prints one line on stdout, the URL to open:
    /// http://ADDR:PORT/?token=<128 random bits>. Runs until SIGINT or SIGTERM.
    /// Every request needs the token (the URL sets an HttpOnly cookie) and a Host
    /// header naming ADDR:PORT; only the SOURCEs given and the images and backup
    /// snapshots found under each --root are reachable. VMs are started on first
    /// use and shared by every tab, as with `list`.
    Serve {
        /// Address to listen on (default 127.0.0.1:8917, or a free port when that
        /// one is taken).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Allow a non-loopback --listen address (the token then travels over
        /// plain HTTP: anyone on the network who learns the URL reads the images).
        #[arg(long)]
        allow_remote: bool,
        /// A directory whose images and backup snapshots (<vmid>/<kind>-<epoch>/)
        /// are offered; may be repeated.
        #[arg(long = "root", value_name = "DIR")]
        roots: Vec<PathBuf>,
        /// Image files, snapshot directories or nbd:// URIs to offer.
        #[arg(value_name = "SOURCE")]
        sources: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    ///
    /// bash: `file-restore completions bash > /etc/bash_completion.d/file-restore`
    /// (or `source <(file-restore completions bash)`); zsh: into a directory of
    /// $fpath as `_file-restore`; fish: into ~/.config/fish/completions/file-restore.fish.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// How `list` and `status` print.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines.
    Text,
    /// One line of JSON.
    Json,
    /// Indented JSON.
    JsonPretty,
}

/// How `find` prints.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FindFormat {
    /// A line per match.
    Text,
    /// One JSON array of entries.
    Json,
    /// One JSON entry per line, printed as found.
    Jsonl,
}

/// `find --type`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FindType {
    /// A regular file.
    F,
    /// A directory.
    D,
    /// A symbolic link.
    L,
}

/// Archive formats of `extract --format`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A zip archive.
    Zip,
    /// A pax tar archive.
    Tar,
}

/// `--accel`.
#[derive(Clone, Copy, ValueEnum)]
pub enum Accel {
    /// KVM when it answers, else TCG.
    Auto,
    /// KVM only.
    Kvm,
    /// TCG (emulation) only.
    Tcg,
}

/// `--transport`.
#[derive(Clone, Copy, ValueEnum)]
pub enum Transport {
    /// Kernel vsock when /dev/vhost-vsock opens, else vhost-user.
    Auto,
    /// Kernel vsock (/dev/vhost-vsock).
    Kernel,
    /// vhost-user vsock through vhost-device-vsock.
    VhostUser,
}

/// The shells `completions` writes scripts for.
#[derive(Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    /// GNU bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}
