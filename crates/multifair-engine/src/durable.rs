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

/// This machine's name, as the lock records it.
fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match rc {
        0 => String::from_utf8_lossy(&buffer[..end]).into_owned(),
        _ => "an unknown host".into(),
    }
}

/// An exclusive lock on a folder (`folder/lock`), held while this process works in it. The
/// kernel holds it (`flock`), so it ends with the process however that ends, and on a shared
/// filesystem that supports locks it excludes processes on other nodes too; the file records
/// the holder's PID and host for the messages. Released (and the file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
}

/// Another process holds a folder's lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "{folder} is in use by {holder} (lock {folder}/lock); run it again once that process ends. The lock is the kernel's: it goes with its process, on a network filesystem with the server's lease when a node is lost"
)]
pub struct Locked {
    pub folder: String,
    /// "process P on HOST since T", as the holder wrote it.
    pub holder: String,
}

/// The exit code of a run refused because another process holds its lock (EX_TEMPFAIL).
pub const LOCKED_EXIT: u8 = 75;

/// Whether `file` is still the file at `path` (not unlinked by the lock's last holder).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "another process".into())
}

impl RunLock {
    /// Takes `folder/lock`, or fails with [`Locked`] naming the holder.
    pub fn take(folder: &Path) -> anyhow::Result<RunLock> {
        let path = folder.join("lock");
        for _ in 0..64 {
            let file = (std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true))
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                // The last holder may have removed the file between our open and our lock.
                Ok(()) if !same_file(&file, &path) => continue,
                Ok(()) => {
                    let since = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let text = format!(
                        "process {} on {} since unix time {since}\n",
                        std::process::id(),
                        hostname()
                    );
                    file.set_len(0)
                        .and_then(|()| (&file).write_all(text.as_bytes()))
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(RunLock { path, file });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Locked {
                        folder: folder.display().to_string(),
                        holder: holder(&path),
                    }
                    .into());
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(
                        anyhow::Error::from(e).context(format!("locking {}", path.display()))
                    );
                }
            }
        }
        anyhow::bail!("could not take {}: it kept being replaced", path.display())
    }

    /// The holder of `folder`'s lock, when another process holds it.
    pub fn held(folder: &Path) -> Option<String> {
        let path = folder.join("lock");
        let file = File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(holder(&path)),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held: a process that opens it now finds it unlinked and retries.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's lock: a second taker is refused with the holder's PID and host, a lock
    /// file nobody holds (left by a killed process, or naming a PID that now belongs to
    /// another process) is simply taken, and the file goes with the lock.
    #[test]
    fn the_run_lock_names_its_holder_and_never_outlives_it() {
        let dir = std::env::temp_dir().join(format!("multifair-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("lock"),
            "process 1 on elsewhere since unix time 0\n",
        )
        .unwrap();
        let lock = RunLock::take(&dir).unwrap();
        let me = format!("process {} on {}", std::process::id(), hostname());
        assert!(RunLock::held(&dir).unwrap().starts_with(&me));
        let e = RunLock::take(&dir).unwrap_err();
        let locked = e.downcast_ref::<Locked>().unwrap();
        assert!(locked.holder.starts_with(&me), "{locked}");
        assert!(
            e.to_string()
                .contains("run it again once that process ends")
        );
        drop(lock);
        assert!(!dir.join("lock").exists() && RunLock::held(&dir).is_none());
        drop(RunLock::take(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
