//! The man pages of `file-restore`, generated with clap_mangen from the
//! clap definition in [`crate::cli`]: `file-restore.1` and one page per
//! subcommand. Used by the `file-restore-man` binary (`make build`).

use super as cli;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Sections of `file-restore.1` that are not options: environment and files.
const EXTRA_ROFF: &str = r#".SH ENVIRONMENT
.TP
\fBFILE_RESTORE_KERNEL\fR, \fBFILE_RESTORE_INITRAMFS\fR
Guest kernel and base initramfs when \fB\-\-kernel\fR / \fB\-\-initramfs\fR are not given.
.TP
\fBFILE_RESTORE_RUNTIME_DIR\fR
Directory of the VM map and the VMs' run directories (default
\fI$XDG_RUNTIME_DIR/file\-restore\fR, else \fI/run/user/<uid>/file\-restore\fR).
.TP
\fBFILE_RESTORE_HELPER\fR
The \fBfile\-restore\-helper\fR to start QEMU through.
.TP
\fBFILE_RESTORE_MAP\fR
When a file is read from the disks through QEMU's read\-only NBD export instead of
through the guest: \fIauto\fR (default: mappable files of 4 MiB and more), \fIoff\fR
(never) or \fIalways\fR (any size). \fB\-v\fR says which way each file went.
.TP
\fBRUST_LOG\fR
Log filter in env_logger syntax (e.g. \fIfile_restore=debug\fR); overrides \fB\-v\fR.
.SH FILES
.TP
\fI/usr/lib/file\-restore/\fR, \fI/usr/local/lib/file\-restore/\fR
The guest kernel (\fIvmlinux\fR), \fIinitramfs.img\fR, \fBfile\-restore\-helper\fR and
\fBvhost\-device\-vsock\fR; \fI<prefix>/lib/file\-restore\fR beside the binary's
\fI<prefix>/bin\fR is looked at first.
.TP
\fI$XDG_RUNTIME_DIR/file\-restore/vms.json\fR
The map of running VMs (mode 0600, locked with flock).
"#;

/// Writes `file-restore.1` and one page per subcommand
/// (`file-restore-list.1`, …) into `dir`; returns the files written.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)?;
        write(&path, &page)?;
        written.push(path);
    }
    let path = dir.join("file-restore.1");
    write(&path, &main_page(cmd)?)?;
    written.push(path);
    Ok(written)
}

/// The top-level page: clap_mangen's sections plus environment and files.
fn main_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(EXTRA_ROFF.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBCOMMANDS: [&str; 5] = ["list", "extract", "status", "stop", "completions"];

    #[test]
    fn man_pages_cover_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let files = man_pages(dir.path()).unwrap();
        let main = std::fs::read_to_string(dir.path().join("file-restore.1")).unwrap();
        assert!(main.starts_with(".ie") || main.contains(".TH"), "{main}");
        assert!(main.contains("ENVIRONMENT") && main.contains("FILE_RESTORE_RUNTIME_DIR"));
        assert!(
            main.contains(cli::VERSION),
            "the page does not carry the version"
        );
        for sub in SUBCOMMANDS {
            assert!(main.contains(sub), "file-restore.1 does not mention {sub}");
            let page = dir.path().join(format!("file-restore-{sub}.1"));
            assert!(files.contains(&page), "no page {}", page.display());
        }
        assert!(
            !main.contains("man-pages"),
            "the hidden subcommand is documented"
        );
        assert!(
            !dir.path().join("file-restore-man-pages.1").exists(),
            "a page for the hidden subcommand"
        );
    }
}
