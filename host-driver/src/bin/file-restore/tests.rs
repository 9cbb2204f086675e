//! Unit tests of the CLI: flags reach their options, guest texts are
//! escaped in text output.

use super::*;
use file_restore::cli::OutputFormat;
use file_restore::driver::ClientError;
use file_restore::driver::VmReport;
use file_restore_wire::{Entry, EntryType};
use output::{daemon_error, write_list, write_status};
use std::path::PathBuf;

fn extract_flags(args: &[&str]) -> (bool, bool) {
    let cli = Cli::try_parse_from(
        [
            "file-restore",
            "extract",
            "img.qcow2",
            "/d/part/1/etc",
            "out",
        ]
        .iter()
        .chain(args),
    )
    .unwrap();
    match cli.cmd {
        Cmd::Extract {
            overwrite,
            same_owner,
            ..
        } => (overwrite, same_owner),
        _ => panic!("not extract"),
    }
}

const EVIL: &str = "x\x1b]0;pwned\x07\x1b[2J\nfake line\r\u{9b}31m\x7f";
const EVIL_SHOWN: &str = "x\\x1b]0;pwned\\x07\\x1b[2J\\x0afake line\\x0d\\u{9b}31m\\x7f";

fn no_controls(text: &str) {
    for line in text.lines() {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in {line:?}"
        );
    }
}

#[test]
fn text_listing_escapes_guest_names_json_stays_exact() {
    let entries = vec![Entry {
        filepath: file_restore_wire::encode_path(b"/d/part/1/x"),
        text: EVIL.into(),
        entry_type: EntryType::Symlink,
        leaf: true,
        size: Some(1),
        mtime: Some(0),
        target: Some(format!("/etc/{EVIL}")),
        fstype: Some(format!("ext4{EVIL}")),
        label: Some(format!("label{EVIL}")),
        encryption: Some(format!("LUKS{EVIL}")),
        locked: Some(true),
        error: Some(format!("bad{EVIL}")),
        path: None,
    }];
    let mut out = Vec::new();
    write_list(&mut out, &entries, OutputFormat::Text).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    no_controls(&text);
    assert_eq!(
        text,
        format!(
            "l            1 1970-01-01 00:00 {EVIL_SHOWN} [ext4{EVIL_SHOWN} \"label{EVIL_SHOWN}\" LUKS{EVIL_SHOWN}, locked] -> /etc/{EVIL_SHOWN} \
             (error: bad{EVIL_SHOWN})\n"
        )
    );
    let mut out = Vec::new();
    write_list(&mut out, &entries, OutputFormat::Json).unwrap();
    let back: Vec<Entry> = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, entries);
}

fn report(name: &str, label: &str, disk: &str) -> VmReport {
    VmReport {
        name: name.into(),
        label: label.into(),
        source: format!("/img/{label}"),
        pid: 1,
        addr: "vhost-user:/run/x.vsock".into(),
        accel: "tcg".into(),
        uptime: Some(1),
        timeout_left: None,
        images: vec![PathBuf::from("/img")],
        guest_config: None,
        disks: Some(vec![file_restore_wire::DiskStatus {
            name: disk.into(),
            buckets: vec![file_restore_wire::BucketStatus {
                path: format!("part/{EVIL}"),
                fstype: format!("ext4{EVIL}"),
                label: Some(format!("label{EVIL}")),
                size: 1,
                mounted: false,
                mounting: false,
                encryption: Some(format!("LUKS{EVIL}")),
                locked: Some(true),
                error: Some(format!("gone{EVIL}")),
            }],
        }]),
    }
}

#[test]
fn status_text_escapes_guest_names() {
    let r = report("qemu_-img_0123", "img", &format!("disk{EVIL}"));
    let mut out = Vec::new();
    write_status(&mut out, &[r], OutputFormat::Text).unwrap();
    let text = String::from_utf8(out).unwrap();
    no_controls(&text);
    assert!(
        text.contains(&format!(
            "  disk disk{EVIL_SHOWN}: part/{EVIL_SHOWN} ext4{EVIL_SHOWN} \"label{EVIL_SHOWN}\" (LUKS{EVIL_SHOWN}, locked) \
             (error: gone{EVIL_SHOWN})\n"
        )),
        "{text}"
    );
}

#[test]
fn status_text_starts_each_vm_with_its_label_in_a_column() {
    let reports = [
        report("qemu_-a-gpt.qcow2_1", "gpt.qcow2", "gpt"),
        report("qemu_-b-x.raw_2", "x.raw", "x"),
        report("qemu_-c_3", &format!("evil{EVIL}"), "c"),
    ];
    let mut out = Vec::new();
    write_status(&mut out, &reports, OutputFormat::Text).unwrap();
    let text = String::from_utf8(out).unwrap();
    no_controls(&text);
    let heads: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    let col = format!("evil{EVIL_SHOWN}").len() + 2;
    assert_eq!(
        heads,
        [
            format!("{:<col$}qemu_-a-gpt.qcow2_1", "gpt.qcow2"),
            format!("{:<col$}qemu_-b-x.raw_2", "x.raw"),
            format!("evil{EVIL_SHOWN}  qemu_-c_3"),
        ]
    );
    let mut out = Vec::new();
    write_status(&mut out, &reports[..1], OutputFormat::Json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["label"], "gpt.qcow2");
    assert_eq!(v[0]["source"], "/img/gpt.qcow2");
    assert_eq!(v[0]["name"], "qemu_-a-gpt.qcow2_1");
}

#[test]
fn daemon_errors_are_escaped() {
    let e = daemon_error(
        ClientError::Daemon {
            endpoint: "/api/list",
            status: 404,
            message: format!("no such file: {EVIL}"),
        },
        b"/p",
    );
    let line = error_line(&e);
    no_controls(&line);
    assert_eq!(
        line,
        format!("file-restore: error: no such file: {EVIL_SHOWN}")
    );
    // And an unpack error naming an entry from the archive.
    let e = anyhow::Error::new(file_restore::unpack::UnpackError::Refused {
        entry: EVIL.into(),
        reason: "its path contains '..'".into(),
    });
    let line = error_line(&e);
    no_controls(&line);
    assert!(line.contains(EVIL_SHOWN), "{line}");
}

#[test]
fn same_owner_flag_reaches_the_unpack_options() {
    let (overwrite, same_owner) = extract_flags(&[]);
    assert!(!same_owner);
    let opts = file_restore::sink::extract_unpack_options(overwrite, same_owner);
    assert!(!opts.same_owner && !opts.overwrite);
    assert_eq!((opts.strip_components, opts.umask), (1, None));
    let (overwrite, same_owner) = extract_flags(&["--same-owner", "--overwrite"]);
    let opts = file_restore::sink::extract_unpack_options(overwrite, same_owner);
    assert!(opts.same_owner && opts.overwrite);
}
