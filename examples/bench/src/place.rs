//! Where the database files live: on disk, or on tmpfs (`/dev/shm`), so that commit cost
//! (fsync, page writes) and CPU cost can be told apart.

use std::path::{Path, PathBuf};

/// A temporary directory on one kind of storage; removed when dropped.
pub struct Place {
    /// `disk` or `tmpfs`: the first part of every figure's name.
    pub label: &'static str,
    dir: tempfile::TempDir,
    /// The file system the directory is on, from `/proc/mounts`.
    pub fs_type: String,
}

impl Place {
    /// A directory on disk: under `WAVESYNC_BENCH_DISK_DIR` if set, else the current
    /// directory (where `cargo run` is invoked: the workspace).
    pub fn disk() -> std::io::Result<Place> {
        let base = std::env::var_os("WAVESYNC_BENCH_DISK_DIR")
            .map(PathBuf::from)
            .unwrap_or(std::env::current_dir()?);
        Place::in_dir("disk", &base)
    }

    /// A directory on tmpfs (`/dev/shm`).
    pub fn tmpfs() -> std::io::Result<Place> {
        Place::in_dir("tmpfs", Path::new("/dev/shm"))
    }

    fn in_dir(label: &'static str, base: &Path) -> std::io::Result<Place> {
        let dir = tempfile::Builder::new()
            .prefix(".wavesync-bench-")
            .tempdir_in(base)?;
        let fs_type = fs_type(dir.path());
        Ok(Place {
            label,
            dir,
            fs_type,
        })
    }

    /// The path of database file `name` in this place.
    pub fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `label.figure`.
    pub fn name(&self, figure: &str) -> String {
        format!("{}.{figure}", self.label)
    }
}

/// The type of the file system `path` is on: the mount with the longest matching prefix.
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?;
            let fs = fields.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
        .unwrap_or_else(|| "unknown".to_owned())
}
