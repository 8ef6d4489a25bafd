//! The single writer of a rollout's durable record: the state file and the audit log. Decisions are
//! taken under the driver's lock and handed here, still under it, so the channel holds them in the order
//! they were taken; this thread writes them in that order, off the async request path. A burst of
//! decisions is written as every audit line and the last state only.
//!
//! The state file is replaced atomically and durably: a temporary file with a name no other writer uses,
//! written and fsynced, renamed over the old file, then the directory fsynced so the rename itself
//! survives a crash. A reader therefore sees either the previous state or the new one, never a mix. A
//! state file that cannot be read at start is moved aside (`quarantine`), never overwritten.

use super::{RolloutError, Saved};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// One decision to make durable: the audit line (none when `Null`), the state to save, and who waits.
pub(crate) struct Entry {
    pub(crate) audit: serde_json::Value,
    pub(crate) state: Option<serde_json::Value>,
    pub(crate) done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Where one rollout's record goes.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) state_file: PathBuf,
    pub(crate) audit_log: PathBuf,
}

/// The sending side; dropping it lets the writer finish what is queued and stop.
#[derive(Debug)]
pub(crate) struct Journal {
    tx: Option<mpsc::Sender<Entry>>,
}

impl Journal {
    /// A journal that writes nowhere (no state directory): entries are acknowledged at once.
    pub(crate) fn disabled() -> Self {
        Self { tx: None }
    }

    /// Starts the writer thread for `paths`.
    pub(crate) fn start(endpoint: &str, paths: Paths) -> std::io::Result<Self> {
        if let Some(dir) = paths.state_file.parent() {
            std::fs::create_dir_all(dir)?;
            remove_leftovers(dir, &paths.state_file);
        }
        let mut audit = std::fs::OpenOptions::new().create(true).append(true).open(&paths.audit_log)?;
        // A crash can leave a torn last line; the next line starts on a line of its own.
        if !ends_with_newline(&paths.audit_log) {
            audit.write_all(b"\n")?;
        }
        let (tx, rx) = mpsc::channel::<Entry>();
        std::thread::Builder::new()
            .name(format!("journal:{endpoint}"))
            .spawn(move || write_loop(&rx, &paths, audit))?;
        Ok(Self { tx: Some(tx) })
    }

    /// Queues an entry. Called under the driver's lock, so entries keep the order of the decisions.
    pub(crate) fn send(&self, entry: Entry) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(entry)) = tx.send(entry) {
                    tracing::error!("the rollout journal has stopped; a decision was not written");
                    ack(entry.done);
                }
            }
            None => ack(entry.done),
        }
    }
}

fn ack(done: Option<tokio::sync::oneshot::Sender<()>>) {
    if let Some(d) = done {
        let _ = d.send(());
    }
}

fn write_loop(rx: &mpsc::Receiver<Entry>, paths: &Paths, mut audit: std::fs::File) {
    let mut seq: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut lines = String::new();
        for e in batch.iter().filter(|e| !e.audit.is_null()) {
            lines.push_str(&e.audit.to_string());
            lines.push('\n');
        }
        if !lines.is_empty()
            && let Err(e) = audit.write_all(lines.as_bytes()).and_then(|()| audit.sync_data())
        {
            tracing::error!(error = %e, path = %paths.audit_log.display(), "cannot append to the audit log");
        }
        if let Some(state) = batch.iter().rev().find_map(|e| e.state.as_ref()) {
            seq += 1;
            if let Err(e) = replace(&paths.state_file, state, seq) {
                tracing::error!(error = %e, path = %paths.state_file.display(), "cannot write the rollout state file");
            }
        }
        for e in batch {
            ack(e.done);
        }
    }
}

/// Removes temporary files a killed process left behind while replacing `state_file`.
fn remove_leftovers(dir: &Path, state_file: &Path) {
    let Some(name) = state_file.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefix = format!(".{name}.");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether the file is empty or ends with a newline.
fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return true };
    let mut last = [b'\n'];
    if f.seek(SeekFrom::End(-1)).is_ok() {
        let _ = f.read_exact(&mut last);
    }
    last[0] == b'\n'
}

/// Replaces `path` with `value` atomically and durably, through a temporary file unique to this
/// process and write.
pub(crate) fn replace(path: &Path, value: &impl Serialize, seq: u64) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    replace_bytes(path, &text, seq)
}

/// Replaces `path` with `text` as [`replace`] does (`seq` tells this write's temporary file apart).
pub(crate) fn replace_bytes(path: &Path, text: &[u8], seq: u64) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a saved state, if there is one.
pub(super) fn read_saved(path: &Path) -> Result<Option<Saved>, RolloutError> {
    let shown = || path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|source| RolloutError::Corrupt { path: shown(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RolloutError::Io { path: shown(), source }),
    }
}

/// Moves a state file that cannot be read aside (kept for a post-mortem, never overwritten) and says
/// why the rollout starts held.
pub(super) fn quarantine(file: &Path, shown: &str, error: &serde_json::Error, now_ms: u64) -> String {
    let aside = file.with_extension(format!("json.corrupt-{now_ms}"));
    let kept = match std::fs::rename(file, &aside) {
        Ok(()) => format!("kept as {}", aside.display()),
        Err(e) => format!("could not be moved aside ({e})"),
    };
    let why = format!(
        "the state file {shown} is not a rollout state file ({error}); it was {kept}. The rollout starts \
         paused with every request on control: resume it from the admin API to start its plan"
    );
    tracing::error!(state_file = %shown, "{why}");
    why
}
