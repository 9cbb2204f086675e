//! initramfs builder.
