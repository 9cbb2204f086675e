//! Links util-linux's libblkid statically (the daemon is a static binary, the
//! initramfs's `/init`). The library comes from Debian's `libblkid-dev`
//! (`scripts/deps.sh` installs it); `pkg-config` says where it is.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BLKID_LIB_DIR");
    let dir = std::env::var("BLKID_LIB_DIR").ok().or_else(|| {
        let out = Command::new("pkg-config")
            .args(["--variable=libdir", "blkid"])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !dir.is_empty()).then_some(dir)
    });
    let dir = dir.unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".into());
    if !std::path::Path::new(&dir).join("libblkid.a").exists() {
        panic!(
            "libblkid.a not found in {dir}: install libblkid-dev (scripts/deps.sh does) or set \
             BLKID_LIB_DIR"
        );
    }
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-lib=static=blkid");
}
