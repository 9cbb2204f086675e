//! Host side of file-restore.
