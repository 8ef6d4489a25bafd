//! The feedback store's file: the JSON lines it holds (as read back, and as written without copying),
//! the changes waiting to be written, and writing them, outside the store's lock.

use super::store::Served;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use switchyard_core::experiment::Sums;

/// A line of the file, as it is read back.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Line {
    Served(Served),
    Joined {
        endpoint: String,
        id: String,
        metric: String,
    },
    /// An outcome an experiment counted (replayed into its sums).
    Outcome {
        endpoint: String,
        arms: u64,
        metric: String,
        canary: bool,
        share: f64,
        value: f64,
        at_ms: u64,
    },
    /// An experiment metric's sums when the file was last rewritten.
    Sums {
        endpoint: String,
        arms: u64,
        metric: String,
        sums: Sums,
        at_ms: u64,
    },
}

/// A [`Line`] as it is written, borrowing what it says.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum LineRef<'a> {
    Served(&'a Served),
    Joined { endpoint: &'a str, id: &'a str, metric: &'a str },
    Outcome { endpoint: &'a str, arms: u64, metric: &'a str, canary: bool, share: f64, value: f64, at_ms: u64 },
    Sums { endpoint: &'a str, arms: u64, metric: &'a str, sums: Sums, at_ms: u64 },
}

/// File changes waiting to be written, in order.
#[derive(Debug)]
pub enum Chunk {
    /// Lines to append.
    Append(Vec<u8>),
    /// The whole file anew, with the live requests only.
    Rewrite(Snapshot),
}

/// What a rewrite writes, taken under the lock in O(live requests) reference counts and serialised by
/// the writer outside it (serialising 100,000 requests under the lock stalled the serving path ~50 ms).
#[derive(Debug)]
pub struct Snapshot {
    /// The experiments' evidence, as lines.
    pub(super) sums: Vec<u8>,
    /// The live requests in the order they were remembered.
    pub(super) served: Vec<Arc<Served>>,
    /// Requests with joins, and the metrics joined.
    pub(super) joined: Vec<(Arc<Served>, Arc<Vec<String>>)>,
    pub(super) lines: u64,
}

impl Snapshot {
    fn text(&self) -> std::io::Result<Vec<u8>> {
        let mut text = self.sums.clone();
        let mut line = |l: &LineRef<'_>| {
            serde_json::to_writer(&mut text, l).map_err(std::io::Error::other)?;
            text.push(b'\n');
            std::io::Result::Ok(())
        };
        for s in &self.served {
            line(&LineRef::Served(s))?;
        }
        for (s, metrics) in &self.joined {
            for metric in metrics.iter() {
                line(&LineRef::Joined { endpoint: &s.endpoint, id: &s.id, metric })?;
            }
        }
        Ok(text)
    }
}

/// Writes `chunks` to `path` in order (outside any lock).
pub fn write_chunks(path: &Path, chunks: &[Chunk]) -> std::io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Append(bytes) => {
                let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
                f.write_all(bytes)?;
            }
            Chunk::Rewrite(snapshot) => crate::rollout::replace_bytes(path, &snapshot.text()?, snapshot.lines)?,
        }
    }
    Ok(())
}
