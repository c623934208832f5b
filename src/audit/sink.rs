//! Where the events go: standard output, or a file opened in append mode. One `write` call per
//! event (the line is built first), under a lock, then a flush (and `fdatasync` if asked): no
//! user-space buffer holds an event once [`Sink::write`] returns.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(super) enum Sink {
    Stdout,
    File {
        path: PathBuf,
        /// `None` until opened, and again after a failed write (the next event reopens it).
        file: Mutex<Option<File>>,
        fsync: bool,
    },
}

impl Sink {
    pub(super) fn write(&self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Sink::File { path, file, fsync } => {
                let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
                if guard.is_none() {
                    *guard = Some(open_file(path)?);
                }
                let handle = guard.as_mut().expect("opened above");
                let result = handle
                    .write_all(line)
                    .and_then(|()| if *fsync { handle.sync_data() } else { Ok(()) });
                if result.is_err() {
                    *guard = None;
                }
                result
            }
        }
    }
}

pub(super) fn open_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
