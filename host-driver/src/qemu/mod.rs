//! The QEMU command line of a restore VM, built as plain data (no process is
//! started here, so every argument is unit-testable).
//!
//! The machine is QEMU's `microvm` without ACPI: no PCI bus, no firmware
//! tables to parse, virtio devices on MMIO (QEMU appends their
//! `virtio_mmio.device=` arguments to the kernel command line), the kernel
//! booted through its PVH entry. No default devices, serial console to a
//! file, `-no-reboot` so a guest that reboots (its way of powering off) or
//! panics (`panic=-1`) makes QEMU exit, the kernel and the per-VM initramfs
//! passed directly, disks as read-only virtio-blk with their name as the
//! serial, and vsock either through the kernel (`vhost-vsock-device`) or a
//! vhost-user sidecar (which needs guest RAM in a shared memfd).
//!
//! Folder: `qmp` (QEMU's control socket), [`export`] (QEMU's read-only NBD
//! export of a VM's drives, for big files) and [`nbd`] (the shape of the
//! nbd:// URIs QEMU is given). May import only `util`.

pub mod export;
pub mod nbd;
pub(crate) mod qmp;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The QEMU binary used when none is given.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// The guest kernel command line.
///
/// - `panic=-1` together with `-no-reboot` turns a guest panic (e.g. `/init`
///   exiting, or an oops: the kernel panics on oops) into QEMU exiting, so the
///   host sees a failure instead of a hang; `reboot=t` reboots (the daemon's
///   power-off) by a triple fault at once instead of trying ACPI and the
///   keyboard controller first, which microvm does not have.
/// - `quiet` keeps the console log short (panics still print) and saves the
///   time of printing to an emulated UART.
/// - `lpj=` skips the delay-loop calibration (~0.1 s under TCG); its value only
///   scales busy-wait delays, which no virtio device needs to be exact.
/// - `noapictimer` uses the PIT for timer events instead of calibrating the
///   local APIC timer against it (~0.2 s under TCG).
///
/// docs/KERNEL.md has the measurements.
pub const KERNEL_CMDLINE: &str = "console=ttyS0 quiet panic=-1 reboot=t lpj=985088 noapictimer";

/// Longest disk serial virtio-blk carries.
pub const MAX_SERIAL_LEN: usize = 20;

/// CPU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization (`-accel kvm -cpu host`).
    Kvm,
    /// Emulation (`-accel tcg -cpu max`); what runs on the project's machines.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// How the VM's vsock device is provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// In-kernel vhost-vsock with this guest CID (needs `/dev/vhost-vsock`).
    Kernel {
        /// The guest's context id.
        cid: u32,
        /// An inherited descriptor of `/dev/vhost-vsock` (opened by the
        /// helper while privileged); `None`: QEMU opens the device itself.
        vhostfd: Option<RawFd>,
    },
    /// A vhost-user-vsock device served by a sidecar on this socket.
    VhostUser {
        /// The sidecar's vhost-user socket (`vhost-device-vsock --socket`).
        socket: PathBuf,
    },
}

/// One disk attached to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Image path, or `/dev/fd/N` for an inherited descriptor.
    pub path: PathBuf,
    /// QEMU format driver (`raw`, `qcow2`, `vmdk`, …).
    pub format: String,
    /// virtio serial: the disk's name in the guest (see [`disk_serials`]).
    pub serial: String,
}

/// Everything that goes into the QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest kernel (`vmlinux` for PVH boot, or a bzImage).
    pub kernel: PathBuf,
    /// The per-VM initramfs, as `/dev/fd/N` of an inherited memfd.
    pub initramfs_fd_path: String,
    /// Disks, attached read-only in this order.
    pub disks: Vec<DiskSpec>,
    /// The storage-tools image, attached read-only after the disks with the
    /// serial [`file_restore_wire::TOOLS_SERIAL`].
    pub tools: Option<PathBuf>,
    /// Guest RAM in MiB (see [`memory_for_disks`]).
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// vsock device.
    pub transport: TransportSpec,
    /// Where the serial console is written.
    pub console_log: PathBuf,
    /// QMP control socket (server, no wait).
    pub qmp_socket: PathBuf,
}

impl VmConfig {
    /// The QEMU arguments (without the program name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a = Args::default();
        let mem = self.memory_mib;
        match &self.transport {
            TransportSpec::VhostUser { .. } => {
                // vhost-user needs the guest RAM shareable with the sidecar.
                a.push2(
                    "-object",
                    format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
                );
                a.push2("-machine", "microvm,acpi=off,memory-backend=mem");
            }
            TransportSpec::Kernel { .. } => a.push2("-machine", "microvm,acpi=off"),
        }
        match self.accel {
            Accel::Kvm => {
                a.push2("-accel", "kvm");
                a.push2("-cpu", "host");
            }
            Accel::Tcg => {
                a.push2("-accel", "tcg,thread=multi");
                a.push2("-cpu", "max");
            }
        }
        a.push2("-m", format!("{mem}M"));
        a.push2("-smp", self.cpus.max(1).to_string());
        a.push_all(&[
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-display",
            "none",
            "-no-reboot",
        ]);
        // Console and QMP as explicit chardevs: their paths go through QEMU's
        // option parser, where commas must be doubled.
        // append=on: the keeper cuts the log back at its cap (crate::vm::keeper);
        // QEMU then writes at the new end instead of leaving a hole.
        let mut con = OsString::from("file,id=con0,path=");
        con.push(escape_option_value(self.console_log.as_os_str()));
        con.push(",append=on");
        a.push2("-chardev", con);
        a.push2("-serial", "chardev:con0");
        let mut qmp = OsString::from("socket,id=qmp0,path=");
        qmp.push(escape_option_value(self.qmp_socket.as_os_str()));
        qmp.push(",server=on,wait=off");
        a.push2("-chardev", qmp);
        a.push2("-mon", "chardev=qmp0,mode=control");
        // -kernel and -initrd take the file name verbatim (no option parsing).
        a.push2("-kernel", self.kernel.as_os_str());
        a.push2("-initrd", self.initramfs_fd_path.as_str());
        a.push2("-append", KERNEL_CMDLINE);
        match &self.transport {
            TransportSpec::Kernel { cid, vhostfd } => {
                let mut dev = format!("vhost-vsock-device,guest-cid={cid}");
                if let Some(fd) = vhostfd {
                    dev.push_str(&format!(",vhostfd={fd}"));
                }
                a.push2("-device", dev);
            }
            TransportSpec::VhostUser { socket } => {
                let mut c = OsString::from("socket,id=vsock0,path=");
                c.push(escape_option_value(socket.as_os_str()));
                a.push2("-chardev", c);
                a.push2("-device", "vhost-user-vsock-device,chardev=vsock0");
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            let mut drive = OsString::from("file=");
            drive.push(escape_option_value(d.path.as_os_str()));
            drive.push(format!(
                ",format={},if=none,id=drive{i},read-only=on",
                escape_option_value(OsStr::new(&d.format)).to_string_lossy()
            ));
            a.push2("-drive", drive);
            a.push2(
                "-device",
                format!(
                    "virtio-blk-device,drive=drive{i},serial={}",
                    escape_option_value(OsStr::new(&d.serial)).to_string_lossy()
                ),
            );
        }
        if let Some(tools) = &self.tools {
            let mut drive = OsString::from("file=");
            drive.push(escape_option_value(tools.as_os_str()));
            drive.push(",format=raw,if=none,id=tools,read-only=on");
            a.push2("-drive", drive);
            a.push2(
                "-device",
                format!(
                    "virtio-blk-device,drive=tools,serial={}",
                    file_restore_wire::TOOLS_SERIAL
                ),
            );
        }
        a.0
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push2(&mut self, opt: &str, value: impl Into<OsString>) {
        self.0.push(opt.into());
        self.0.push(value.into());
    }
    fn push_all(&mut self, items: &[&str]) {
        self.0.extend(items.iter().map(OsString::from));
    }
}

/// Escapes a value for QEMU's `key=value,…` option syntax: `,` → `,,`.
pub fn escape_option_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// Guest RAM for `n` disks: 256 MiB up to 4 disks, 32 MiB more per extra
/// disk, at most 1024 MiB.
pub fn memory_for_disks(n: usize) -> u32 {
    let extra = n.saturating_sub(4).min(1024) as u32;
    (256 + 32 * extra).min(1024)
}

/// Disk serials for these names: only `[A-Za-z0-9_.-]` (others become `_`),
/// at most [`MAX_SERIAL_LEN`] bytes, unique (`-2`, `-3`, … appended within
/// the limit). An empty name becomes `disk`.
pub fn disk_serials<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut base: String = name
            .as_ref()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if base.is_empty() {
            base = "disk".to_string();
        }
        // All characters are ASCII now, so byte truncation is safe.
        base.truncate(MAX_SERIAL_LEN);
        let mut candidate = base.clone();
        let mut n = 2u32;
        while out.contains(&candidate) || candidate == file_restore_wire::TOOLS_SERIAL {
            let suffix = format!("-{n}");
            let keep = MAX_SERIAL_LEN - suffix.len();
            candidate = format!("{}{suffix}", &base[..base.len().min(keep)]);
            n += 1;
        }
        out.push(candidate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_str(c: &VmConfig) -> Vec<String> {
        c.to_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn has_pair(args: &[String], opt: &str, value: &str) -> bool {
        args.windows(2).any(|w| w[0] == opt && w[1] == value)
    }

    fn config(accel: Accel, transport: TransportSpec) -> VmConfig {
        VmConfig {
            kernel: "/k/vmlinux".into(),
            initramfs_fd_path: "/dev/fd/7".into(),
            tools: Some("/k/tools.img".into()),
            disks: vec![
                DiskSpec {
                    path: "/img/a,b.qcow2".into(),
                    format: "qcow2".into(),
                    serial: "drive-scsi0".into(),
                },
                DiskSpec {
                    path: "/dev/fd/9".into(),
                    format: "raw".into(),
                    serial: "data".into(),
                },
            ],
            memory_mib: 256,
            cpus: 1,
            accel,
            transport,
            console_log: "/run/vm,1/console.log".into(),
            qmp_socket: "/run/vm,1/qmp.sock".into(),
        }
    }

    #[test]
    fn tcg_vhost_user_command_line() {
        let c = config(
            Accel::Tcg,
            TransportSpec::VhostUser {
                socket: "/run/vm,1/vhu.sock".into(),
            },
        );
        let a = args_str(&c);
        assert!(has_pair(
            &a,
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on"
        ));
        assert!(has_pair(
            &a,
            "-machine",
            "microvm,acpi=off,memory-backend=mem"
        ));
        assert!(has_pair(&a, "-accel", "tcg,thread=multi"));
        assert!(has_pair(&a, "-cpu", "max"));
        assert!(has_pair(&a, "-m", "256M"));
        assert!(has_pair(&a, "-smp", "1"));
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            assert!(a.iter().any(|x| x == flag), "{flag} missing");
        }
        assert!(has_pair(
            &a,
            "-chardev",
            "file,id=con0,path=/run/vm,,1/console.log,append=on"
        ));
        assert!(has_pair(&a, "-serial", "chardev:con0"));
        assert!(has_pair(
            &a,
            "-chardev",
            "socket,id=qmp0,path=/run/vm,,1/qmp.sock,server=on,wait=off"
        ));
        assert!(has_pair(&a, "-mon", "chardev=qmp0,mode=control"));
        assert!(has_pair(&a, "-kernel", "/k/vmlinux"));
        assert!(has_pair(&a, "-initrd", "/dev/fd/7"));
        assert!(has_pair(&a, "-append", KERNEL_CMDLINE));
        assert!(has_pair(
            &a,
            "-chardev",
            "socket,id=vsock0,path=/run/vm,,1/vhu.sock"
        ));
        assert!(has_pair(
            &a,
            "-device",
            "vhost-user-vsock-device,chardev=vsock0"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "file=/img/a,,b.qcow2,format=qcow2,if=none,id=drive0,read-only=on"
        ));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-blk-device,drive=drive0,serial=drive-scsi0"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "file=/dev/fd/9,format=raw,if=none,id=drive1,read-only=on"
        ));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-blk-device,drive=drive1,serial=data"
        ));
        assert!(!a.iter().any(|x| x.contains("vhost-vsock-device,")));
    }

    #[test]
    fn kvm_kernel_vsock_command_line() {
        let mut c = config(
            Accel::Kvm,
            TransportSpec::Kernel {
                cid: 2570,
                vhostfd: None,
            },
        );
        c.memory_mib = 320;
        c.cpus = 2;
        let a = args_str(&c);
        assert!(has_pair(&a, "-machine", "microvm,acpi=off"));
        assert!(!a.iter().any(|x| x.contains("memory-backend")));
        assert!(has_pair(&a, "-accel", "kvm"));
        assert!(has_pair(&a, "-cpu", "host"));
        assert!(has_pair(&a, "-m", "320M"));
        assert!(has_pair(&a, "-smp", "2"));
        assert!(has_pair(&a, "-device", "vhost-vsock-device,guest-cid=2570"));
        assert!(!a.iter().any(|x| x.contains("vhost-user")));
        c.transport = TransportSpec::Kernel {
            cid: 2570,
            vhostfd: Some(5),
        };
        let a = args_str(&c);
        assert!(has_pair(
            &a,
            "-device",
            "vhost-vsock-device,guest-cid=2570,vhostfd=5"
        ));
    }

    #[test]
    fn ticket_free_args() {
        // The command line never carries anything but the fd path for the initramfs.
        let c = config(
            Accel::Tcg,
            TransportSpec::Kernel {
                cid: 10,
                vhostfd: None,
            },
        );
        let a = args_str(&c);
        assert_eq!(a.iter().filter(|x| x.contains("/dev/fd/7")).count(), 1);
    }

    #[test]
    fn comma_escaping() {
        assert_eq!(escape_option_value(OsStr::new("a,b,,c")), "a,,b,,,,c");
        assert_eq!(escape_option_value(OsStr::new("plain")), "plain");
        let raw = OsStr::from_bytes(b"x\xff,");
        assert_eq!(escape_option_value(raw).as_bytes(), b"x\xff,,");
    }

    #[test]
    fn memory_sizing() {
        assert_eq!(memory_for_disks(0), 256);
        assert_eq!(memory_for_disks(1), 256);
        assert_eq!(memory_for_disks(4), 256);
        assert_eq!(memory_for_disks(5), 288);
        assert_eq!(memory_for_disks(10), 448);
        assert_eq!(memory_for_disks(28), 1024);
        assert_eq!(memory_for_disks(29), 1024);
        assert_eq!(memory_for_disks(usize::MAX), 1024);
    }

    #[test]
    fn serial_sanitizing() {
        let s = disk_serials(&["drive-scsi0", "a b/c,d=é", "", "ok_1.x"]);
        assert_eq!(s, ["drive-scsi0", "a_b_c_d__", "disk", "ok_1.x"]);
    }

    #[test]
    fn serial_length_limit() {
        let s = disk_serials(&["abcdefghijklmnopqrstuvwxyz"]);
        assert_eq!(s, ["abcdefghijklmnopqrst"]);
        assert_eq!(s[0].len(), MAX_SERIAL_LEN);
    }

    #[test]
    fn serial_uniqueness() {
        let long = "abcdefghijklmnopqrstuvwxyz";
        let names: Vec<&str> = vec!["disk", "disk", "disk", long, long, "a/b", "a_b"];
        let s = disk_serials(&names);
        assert_eq!(s[0], "disk");
        assert_eq!(s[1], "disk-2");
        assert_eq!(s[2], "disk-3");
        assert_eq!(s[3], "abcdefghijklmnopqrst");
        assert_eq!(s[4], "abcdefghijklmnopqr-2");
        assert_eq!(s[5], "a_b");
        assert_eq!(s[6], "a_b-2");
        for x in &s {
            assert!(x.len() <= MAX_SERIAL_LEN);
        }
        let many: Vec<String> = (0..30).map(|_| long.to_string()).collect();
        let s = disk_serials(&many);
        let mut dedup = s.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 30);
        assert!(s.iter().all(|x| x.len() <= MAX_SERIAL_LEN));
        assert_eq!(s[29], "abcdefghijklmnopq-30");
    }
}
