//! The map of running VMs: a JSON file in the user's runtime directory,
//! guarded by an exclusive lock and written atomically.
//!
//! The runtime directory is `$FILE_RESTORE_RUNTIME_DIR` when set, else
//! `$XDG_RUNTIME_DIR/file-restore/`, else `/run/user/<uid>/file-restore/`,
//! else (neither exists, e.g. root in CI) `/run/file-restore-<uid>/`; it is
//! created mode 0700 and must be owned by the user. Inside it `vms.json`
//! (mode 0600) holds `{"version": 1, "vms": {NAME: ENTRY, …}}` and `vms.lock`
//! is the lock file: [`LockedMap::lock`] takes `flock(LOCK_EX)` on it, so
//! concurrent invocations read, change and save the map one after another.
//! The entry type is generic; the CLI stores the running VM and its images.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Environment variable overriding the runtime directory.
pub const RUNTIME_DIR_ENV: &str = "FILE_RESTORE_RUNTIME_DIR";
/// The map file's name inside the runtime directory.
pub const MAP_FILE: &str = "vms.json";
/// The lock file's name inside the runtime directory.
pub const LOCK_FILE: &str = "vms.lock";
/// Version written into the map file.
pub const MAP_VERSION: u32 = 1;

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Errors of the runtime directory and the VM map.
#[derive(Debug, thiserror::Error)]
pub enum VmMapError {
    /// The runtime directory cannot be created or examined.
    #[error(
        "cannot create the runtime directory '{path}': {source}; set {RUNTIME_DIR_ENV} to a \
         private directory you own"
    )]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The runtime directory exists but is not safe to use.
    #[error(
        "the runtime directory '{path}' is unsafe: {reason}; remove it or set {RUNTIME_DIR_ENV}"
    )]
    UnsafeRuntimeDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Opening or locking the lock file failed.
    #[error("cannot lock '{path}': {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process held the lock for longer than the timeout.
    #[error(
        "timed out after {secs} s waiting for the lock on '{path}': another file-restore holds \
         it; wait for it to finish, or find it with `fuser {path}`",
        secs = waited.as_secs_f32()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// Reading the map file failed (other than it being corrupt).
    #[error("cannot read the VM map '{path}': {source}")]
    Read {
        /// The map file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing the map file failed.
    #[error("cannot write the VM map '{path}': {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An entry could not be serialized.
    #[error("cannot serialize the VM map: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The user's file-restore runtime directory, created (mode 0700) if missing.
pub fn runtime_dir() -> Result<PathBuf, VmMapError> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let (dir, create_parents) = choose_runtime_dir(
        std::env::var_os(RUNTIME_DIR_ENV),
        std::env::var_os("XDG_RUNTIME_DIR"),
        uid,
    );
    ensure_private_dir(&dir, create_parents, uid)?;
    Ok(dir)
}

/// Picks the runtime directory; the flag says whether missing parents may be
/// created (only for the explicit override).
fn choose_runtime_dir(
    override_dir: Option<OsString>,
    xdg: Option<OsString>,
    uid: u32,
) -> (PathBuf, bool) {
    if let Some(d) = override_dir.filter(|d| !d.is_empty()) {
        return (PathBuf::from(d), true);
    }
    // XDG_RUNTIME_DIR only when it is the user's own (not another user's
    // kept across sudo, which that user could rearrange under us).
    if let Some(x) = xdg.filter(|x| !x.is_empty()).map(PathBuf::from) {
        let own = fs::metadata(&x).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if x.is_absolute() && own {
            return (x.join("file-restore"), false);
        }
    }
    let user_run = PathBuf::from(format!("/run/user/{uid}"));
    if user_run.is_dir() {
        return (user_run.join("file-restore"), false);
    }
    (PathBuf::from(format!("/run/file-restore-{uid}")), false)
}

fn ensure_private_dir(dir: &Path, create_parents: bool, uid: u32) -> Result<(), VmMapError> {
    let mut b = fs::DirBuilder::new();
    b.mode(0o700).recursive(create_parents);
    match b.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(VmMapError::RuntimeDir {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    }
    let unsafe_dir = |reason: String| VmMapError::UnsafeRuntimeDir {
        path: dir.to_path_buf(),
        reason,
    };
    let m = fs::symlink_metadata(dir).map_err(|e| VmMapError::RuntimeDir {
        path: dir.to_path_buf(),
        source: e,
    })?;
    if !m.is_dir() {
        return Err(unsafe_dir("it is not a directory (or is a symlink)".into()));
    }
    if m.uid() != uid {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not {uid}",
            m.uid()
        )));
    }
    if m.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
            VmMapError::RuntimeDir {
                path: dir.to_path_buf(),
                source: e,
            }
        })?;
    }
    Ok(())
}

/// Entries of the VM map by name, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct VmMap<T> {
    entries: BTreeMap<String, T>,
}

impl<T> Default for VmMap<T> {
    fn default() -> Self {
        VmMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<T> VmMap<T> {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.entries.get(name)
    }

    /// The entry named `name`, to change in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.entries.get_mut(name)
    }

    /// Adds or replaces an entry; returns the previous one.
    pub fn insert(&mut self, name: impl Into<String>, entry: T) -> Option<T> {
        self.entries.insert(name.into(), entry)
    }

    /// Removes an entry and returns it.
    pub fn remove(&mut self, name: &str) -> Option<T> {
        self.entries.remove(name)
    }

    /// All entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.entries.iter()
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Serialize)]
struct MapFileOut<'a, T> {
    version: u32,
    vms: &'a BTreeMap<String, T>,
}

/// The VM map, loaded while holding the exclusive lock. Dropping it releases
/// the lock; call [`LockedMap::save`] first to keep changes.
#[derive(Debug)]
pub struct LockedMap<T> {
    dir: PathBuf,
    map: VmMap<T>,
    warnings: Vec<String>,
    _lock: File,
}

impl<T> Deref for LockedMap<T> {
    type Target = VmMap<T>;
    fn deref(&self) -> &VmMap<T> {
        &self.map
    }
}

impl<T> DerefMut for LockedMap<T> {
    fn deref_mut(&mut self) -> &mut VmMap<T> {
        &mut self.map
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Takes `flock(LOCK_EX)` on `path`, polling with `LOCK_NB` until `timeout`.
fn acquire(path: &Path, timeout: Duration) -> Result<File, VmMapError> {
    let lock_err = |e| VmMapError::Lock {
        path: path.to_path_buf(),
        source: e,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(lock_err)?;
    let start = Instant::now();
    loop {
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => {}
            Some(libc::EINTR) => continue,
            _ => return Err(lock_err(e)),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(VmMapError::LockTimeout {
                path: path.to_path_buf(),
                waited,
            });
        }
        std::thread::sleep(POLL_INTERVAL.min(timeout - waited));
    }
}

impl<T: Serialize + DeserializeOwned> LockedMap<T> {
    /// Locks the map in `dir` (waiting at most `timeout` for another holder)
    /// and loads it. A missing map is empty. A map file that is not valid
    /// JSON is renamed aside as `vms.json.corrupt-<epoch>` and the map starts
    /// empty; entries that do not parse are dropped (the original file is
    /// copied aside the same way). Both give a [`warnings`](Self::warnings)
    /// line and a `log` warning.
    pub fn lock(dir: &Path, timeout: Duration) -> Result<LockedMap<T>, VmMapError> {
        let lock = acquire(&dir.join(LOCK_FILE), timeout)?;
        let mut locked = LockedMap {
            dir: dir.to_path_buf(),
            map: VmMap::default(),
            warnings: Vec::new(),
            _lock: lock,
        };
        locked.load()?;
        Ok(locked)
    }

    /// The map file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(MAP_FILE)
    }

    /// Problems found while loading (corrupt file or entries set aside).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn warn(&mut self, msg: String) {
        log::warn!("{msg}");
        self.warnings.push(msg);
    }

    /// A free `vms.json.corrupt-<epoch>[-N]` name.
    fn corrupt_name(&self) -> PathBuf {
        let base = format!("{MAP_FILE}.corrupt-{}", crate::util::unix_now());
        let mut candidate = self.dir.join(&base);
        let mut n = 1;
        while candidate.exists() {
            candidate = self.dir.join(format!("{base}-{n}"));
            n += 1;
        }
        candidate
    }

    fn load(&mut self) -> Result<(), VmMapError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(VmMapError::Read { path, source: e }),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let vms = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(
                |mut v| match v.get_mut("vms").map(serde_json::Value::take) {
                    Some(serde_json::Value::Object(m)) => Some(m),
                    _ => None,
                },
            );
        let Some(vms) = vms else {
            let aside = self.corrupt_name();
            fs::rename(&path, &aside).map_err(|e| VmMapError::Write {
                path: aside.clone(),
                source: e,
            })?;
            self.warn(format!(
                "the VM map '{}' was corrupt: moved it to '{}' and started with an empty map \
                 (VMs it listed stop by themselves when idle)",
                path.display(),
                aside.display()
            ));
            return Ok(());
        };
        let mut bad = Vec::new();
        for (name, value) in vms {
            match serde_json::from_value::<T>(value) {
                Ok(entry) => {
                    self.map.insert(name, entry);
                }
                Err(e) => bad.push(format!("{name} ({e})")),
            }
        }
        if !bad.is_empty() {
            let aside = self.corrupt_name();
            write_private(&aside, &bytes).map_err(|e| VmMapError::Write {
                path: aside.clone(),
                source: e,
            })?;
            self.warn(format!(
                "dropped unreadable entries of the VM map '{}': {}; the original is kept as '{}'",
                path.display(),
                bad.join(", "),
                aside.display()
            ));
        }
        Ok(())
    }

    /// Writes the map atomically: a temporary file in the same directory
    /// (mode 0600), fsynced, renamed over `vms.json`, then the directory
    /// fsynced. On error the temporary file is removed.
    pub fn save(&self) -> Result<(), VmMapError> {
        let body = serde_json::to_vec_pretty(&MapFileOut {
            version: MAP_VERSION,
            vms: &self.map.entries,
        })?;
        let tmp = self.dir.join(format!(
            ".{MAP_FILE}.tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_private(&tmp, &body)
            .map_err(|e| VmMapError::Write {
                path: tmp.clone(),
                source: e,
            })
            .and_then(|()| {
                fs::rename(&tmp, self.path()).map_err(|e| VmMapError::Write {
                    path: self.path(),
                    source: e,
                })
            });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
            return result;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| VmMapError::Write {
                path: self.dir.clone(),
                source: e,
            })
    }
}

/// Creates `path` (which must not exist) mode 0600, writes and fsyncs it.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
