//! Writes that survive kills and full disks: every output is written to a temporary name,
//! fsynced and renamed into place, so a reader sees the old file or the new one, never a torn
//! one; a run folder is locked by the process training it. Fault injection for the tests
//! (`MULTIFAIR_FAULT`) lives here too: `kill-after:N` kills the process (SIGKILL, no unwinding)
//! right after its N-th durable write, `full-after:N` fails every write from the N-th on with
//! "no space left on device".

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;

/// Durable writes done by this process (what the fault hooks count).
static WRITES: AtomicUsize = AtomicUsize::new(0);

/// The injected fault, from `MULTIFAIR_FAULT`.
enum Fault {
    KillAfter(usize),
    FullAfter(usize),
}

fn fault() -> Option<Fault> {
    let spec = std::env::var("MULTIFAIR_FAULT").ok()?;
    let (kind, n) = spec.split_once(':')?;
    let n = n.parse().ok()?;
    match kind {
        "kill-after" => Some(Fault::KillAfter(n)),
        "full-after" => Some(Fault::FullAfter(n)),
        _ => None,
    }
}

/// Before a durable write of `path`: under `full-after:N`, the N-th and later writes fail.
fn before_write(path: &Path) -> anyhow::Result<()> {
    if let Some(Fault::FullAfter(n)) = fault()
        && WRITES.load(Ordering::SeqCst) + 1 >= n
    {
        let error = std::io::Error::from_raw_os_error(28); // ENOSPC
        return Err(error).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// After a durable write: under `kill-after:N`, the N-th write is the last thing the process
/// does.
fn after_write() {
    let done = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(Fault::KillAfter(n)) = fault()
        && done == n
    {
        kill_self();
    }
}

#[cfg(unix)]
fn kill_self() -> ! {
    // SAFETY: kill(2) on our own process id; SIGKILL ends it at once.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

#[cfg(not(unix))]
fn kill_self() -> ! {
    std::process::abort()
}

/// Temporaries made by this process so far (their names must not collide across threads).
static TEMPORARIES: AtomicUsize = AtomicUsize::new(0);

/// A file's temporary sibling: `.NAME.PID-N.tmp` in the same folder (so the rename stays on one
/// file system), unique to the writer (two sweeps may write one `sweep.json` at once).
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TEMPORARIES.fetch_add(1, Ordering::SeqCst);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Removes the temporaries a killed write left in `folder` (`.NAME.tmp`).
pub fn remove_temporaries(folder: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") && path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Flushes a folder's entries (the renames into it) to disk.
pub fn sync_folder(folder: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    File::open(folder)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", folder.display()))?;
    Ok(())
}

/// Writes `path` through `write`, which fills the file at the path it is given: a temporary
/// sibling, fsynced, then renamed over `path`.
pub fn persist(path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    before_write(path)?;
    let tmp = temporary(path);
    write(&tmp).with_context(|| format!("writing {}", path.display()))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    sync_folder(path.parent().unwrap_or(Path::new(".")))?;
    after_write();
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`persist`]).
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    persist(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

/// Renames a finished folder into place and flushes its parent: the commit point of a
/// checkpoint. Its files must have been synced.
pub fn commit_folder(from: &Path, to: &Path) -> anyhow::Result<()> {
    before_write(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    sync_folder(from)?;
    std::fs::rename(from, to).with_context(|| format!("writing {}", to.display()))?;
    sync_folder(to.parent().unwrap_or(Path::new(".")))?;
    after_write();
    Ok(())
}

/// Appends `text` to `path` and syncs it (a torn last line is dropped on resume).
pub fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    before_write(path)?;
    (OpenOptions::new().create(true).append(true).open(path))
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_data()))
        .with_context(|| format!("writing {}", path.display()))?;
    after_write();
    Ok(())
}

/// Whether process `pid` is alive (on Linux, from /proc; elsewhere assumed alive).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// An exclusive lock on a run folder, held while this process trains it and released on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Another live process holds a run's lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "{folder} is being trained by process {pid} (lock file {folder}/lock); run it again once that process ends"
)]
pub struct Locked {
    pub folder: String,
    pub pid: u32,
}

/// The exit code of a run refused because another process holds its lock (EX_TEMPFAIL).
pub const LOCKED_EXIT: u8 = 75;

impl RunLock {
    /// Takes `folder/lock`; a lock left by a dead process is taken over. The lock file is
    /// written whole under another name and then hard-linked into place, which fails when a
    /// lock exists: another process never reads a lock without its PID.
    pub fn take(folder: &Path) -> anyhow::Result<RunLock> {
        let (path, me) = (folder.join("lock"), std::process::id());
        let mine = folder.join(format!(".lock-{me}"));
        std::fs::write(&mine, me.to_string())
            .with_context(|| format!("writing {}", mine.display()))?;
        let result = (|| {
            for _ in 0..3 {
                match std::fs::hard_link(&mine, &path) {
                    Ok(()) => return Ok(RunLock { path: path.clone() }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let holder = std::fs::read_to_string(&path)
                            .ok()
                            .and_then(|t| t.trim().parse().ok());
                        match holder {
                            Some(pid) if pid != me && alive(pid) => {
                                return Err(Locked {
                                    folder: folder.display().to_string(),
                                    pid,
                                }
                                .into());
                            }
                            // Stale (its process is gone) or unreadable: take it over.
                            _ => match std::fs::remove_file(&path) {
                                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                    return Err(anyhow::Error::from(e)
                                        .context(format!("removing {}", path.display())));
                                }
                                _ => {}
                            },
                        }
                    }
                    Err(e) => {
                        return Err(
                            anyhow::Error::from(e).context(format!("creating {}", path.display()))
                        );
                    }
                }
            }
            anyhow::bail!("could not take {}", path.display())
        })();
        let _ = std::fs::remove_file(&mine);
        result
    }

    /// Whether `folder` is locked by a live process other than this one.
    pub fn held(folder: &Path) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(folder.join("lock"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (pid != std::process::id() && alive(pid)).then_some(pid)
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("multifair-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json"]);
        // A lock is exclusive while held, stale once its process is gone, released on drop.
        let lock = RunLock::take(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("lock")).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!dir.join("lock").exists());
        std::fs::write(dir.join("lock"), "4294967295").unwrap();
        assert_eq!(RunLock::held(&dir), None);
        let _lock = RunLock::take(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
