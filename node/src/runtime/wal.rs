//! The durable log: a node's records appended as `[u32 len][u32 crc32][body]`
//! and replayed on restart. A torn tail (a crash mid-write) is detected by the
//! checksum and cut off; everything before it is intact.
//!
//! Records are written with one `write` per batch of inputs, before any reply
//! or message of that batch leaves the node, so an acknowledgement never
//! outruns its data. Without `fsync` the data survives a killed process (it is
//! in the kernel's page cache) but not a power loss; `fsync: true` in the
//! cluster file buys the latter at a large cost in throughput.

use serde::{de::DeserializeOwned, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The log is rewritten from a compact snapshot beyond this size.
const COMPACT_BYTES: u64 = 8 << 20;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("durable log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("durable log {path}: cannot encode a record: {source}")]
    Encode {
        path: PathBuf,
        source: postcard::Error,
    },
}

pub struct Wal<R> {
    path: PathBuf,
    file: File,
    size: u64,
    fsync: bool,
    buf: Vec<u8>,
    _r: PhantomData<fn() -> R>,
}

impl<R: Serialize + DeserializeOwned> Wal<R> {
    /// Opens (or creates) `dir/wal.log` and returns the records it holds.
    pub fn open(dir: &Path, fsync: bool) -> Result<(Self, Vec<R>), WalError> {
        let path = dir.join("wal.log");
        let io = |source| WalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut bytes).map_err(io)?;
        }
        let (records, good) = decode_all::<R>(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - good, "cutting a torn tail off the durable log");
            let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.set_len(good as u64).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok((
            Wal {
                path,
                file,
                size: good as u64,
                fsync,
                buf: Vec::new(),
                _r: PhantomData,
            },
            records,
        ))
    }

    /// Appends a batch with one write (and one fsync if configured).
    pub fn append(&mut self, records: &[R]) -> Result<u64, WalError> {
        if records.is_empty() {
            return Ok(0);
        }
        self.buf.clear();
        for r in records {
            encode_record(r, &mut self.buf).map_err(|source| WalError::Encode {
                path: self.path.clone(),
                source,
            })?;
        }
        let io = |source| WalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&self.buf).map_err(io)?;
        if self.fsync {
            self.file.sync_data().map_err(io)?;
        }
        self.size += self.buf.len() as u64;
        Ok(self.buf.len() as u64)
    }

    pub fn needs_compaction(&self) -> bool {
        self.size > COMPACT_BYTES
    }

    /// Replaces the log with `snapshot` atomically (write, sync, rename).
    pub fn compact(&mut self, snapshot: &[R]) -> Result<u64, WalError> {
        let tmp = self.path.with_extension("tmp");
        let io = |source| WalError::Io {
            path: tmp.clone(),
            source,
        };
        let mut buf = Vec::new();
        for r in snapshot {
            encode_record(r, &mut buf).map_err(|source| WalError::Encode {
                path: tmp.clone(),
                source,
            })?;
        }
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.size = buf.len() as u64;
        Ok(self.size)
    }
}

fn encode_record<R: Serialize>(r: &R, buf: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let body = postcard::to_allocvec(r)?;
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// Decodes records up to the first damaged one; returns them and the length
/// of the intact prefix.
fn decode_all<R: DeserializeOwned>(bytes: &[u8]) -> (Vec<R>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        match postcard::from_bytes(body) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        at += 8 + len;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = std::env::temp_dir().join(format!("faultline-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let (mut w, recs) = Wal::<(u32, String)>::open(&dir, false).unwrap();
            assert!(recs.is_empty());
            w.append(&[(1, "a".into()), (2, "b".into())]).unwrap();
            w.append(&[(3, "c".into())]).unwrap();
        }
        // Simulate a crash in the middle of a write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("wal.log"))
            .unwrap();
        f.write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        drop(f);
        let (mut w, recs) = Wal::<(u32, String)>::open(&dir, false).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2], (3, "c".to_string()));
        w.compact(&[(9, "z".into())]).unwrap();
        w.append(&[(10, "y".into())]).unwrap();
        drop(w);
        let (_, recs) = Wal::<(u32, String)>::open(&dir, false).unwrap();
        assert_eq!(recs, vec![(9, "z".to_string()), (10, "y".to_string())]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
