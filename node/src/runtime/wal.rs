//! The durable log: a header ([`MAGIC`]), then a node's records appended as
//! `[u32 len][u32 crc32][body]` and replayed on restart.
//!
//! Damage is told apart from a torn tail. A crash mid-write can only damage
//! the end of the log, so a damaged record with no valid record after it is
//! a torn tail: it is cut off and logged. A damaged record followed by valid
//! ones, or a file that does not start with the header, is corruption: the
//! node refuses to start, names the offset and the reason, and leaves the
//! file as it is (the evidence), since replaying only the part before the
//! damage would silently forget acknowledged writes.
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

/// The first bytes of every log: the format and its version.
pub const MAGIC: &[u8; 8] = b"FLWAL01\n";

/// No record is longer than this; a longer length field is damage.
const MAX_RECORD: usize = 256 << 20;

/// Bytes hashed while looking for valid records after a damaged one; past
/// it the damage is reported as corruption (the cautious answer).
const SCAN_BUDGET: usize = 1 << 30;

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
    #[error(
        "durable log {path} is damaged at byte {offset}: {reason}. It was left as it is and \
         the node did not start, because replaying only what comes before the damage would \
         forget records it holds. To start this node anyway, move the file aside \
         (mv {path} {path}.damaged): it then starts with no durable state and forgets what it \
         acknowledged, which a quorum system tolerates only while the other servers still \
         hold a majority copy of every acknowledged write"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
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
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let corrupt = |offset: usize, reason: String| WalError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        // A missing or empty log, or one whose header write was torn, is new.
        let fresh = bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes);
        if !fresh && !bytes.starts_with(MAGIC) {
            return Err(corrupt(
                0,
                "it does not start with the faultline log header (not a log of this format)".into(),
            ));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        if fresh {
            file.set_len(0).map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_data().map_err(io)?;
            bytes = MAGIC.to_vec();
        }
        let (records, good) = decode_all::<R>(&bytes, MAGIC.len());
        if good < bytes.len() && record_at(&bytes, good).is_some() {
            // Whole and checksummed, yet not a record this build reads: not a
            // torn write (a newer format, say). Refuse rather than cut it.
            return Err(corrupt(
                good,
                "the record there is intact but cannot be decoded by this version".into(),
            ));
        }
        if good < bytes.len() {
            match valid_record_after(&bytes, good) {
                Scan::None => {
                    tracing::warn!(path = %path.display(), offset = good, cut = bytes.len() - good, "cutting a torn tail off the durable log");
                    file.set_len(good as u64).map_err(io)?;
                }
                Scan::Found(at) => {
                    return Err(corrupt(
                        good,
                        format!(
                            "the record there fails its checksum, yet a valid record follows at byte {at}, so this is not a torn tail"
                        ),
                    ))
                }
                Scan::GaveUp => {
                    return Err(corrupt(
                        good,
                        "the record there fails its checksum, and the rest of the file is too large to tell a torn tail from damage".into(),
                    ))
                }
            }
        }
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

    /// Replaces the log with `snapshot` atomically (write, sync, rename,
    /// sync the directory: without the last step a power loss can bring
    /// back the old log, or none, after the rename was acknowledged).
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
        f.write_all(MAGIC).map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| WalError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.size = (MAGIC.len() + buf.len()) as u64;
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

/// The record whose header starts at `at`, if it is whole and its checksum
/// holds: its body.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let head = bytes.get(at..at.checked_add(8)?)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(at + 8..at + 8 + len)?;
    (crc32fast::hash(body) == crc).then_some(body)
}

/// Decodes records from `start` up to the first damaged one; returns them
/// and the length of the intact prefix.
fn decode_all<R: DeserializeOwned>(bytes: &[u8], start: usize) -> (Vec<R>, usize) {
    let mut out = Vec::new();
    let mut at = start;
    while let Some(body) = record_at(bytes, at) {
        match postcard::from_bytes(body) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        at += 8 + body.len();
    }
    (out, at)
}

enum Scan {
    None,
    Found(usize),
    GaveUp,
}

/// Looks for a valid record starting anywhere after the damaged one at
/// `damaged`. A false match needs a 32-bit checksum to agree by chance.
fn valid_record_after(bytes: &[u8], damaged: usize) -> Scan {
    let mut budget = SCAN_BUDGET;
    for at in damaged + 1..bytes.len().saturating_sub(8) {
        let len =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if len == 0 || len > MAX_RECORD || at + 8 + len > bytes.len() {
            continue;
        }
        let Some(left) = budget.checked_sub(len) else {
            return Scan::GaveUp;
        };
        budget = left;
        if record_at(bytes, at).is_some() {
            return Scan::Found(at);
        }
    }
    Scan::None
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

    /// A log of 50 records in `dir`; returns its bytes.
    fn fifty(dir: &Path) -> Vec<u8> {
        let _ = std::fs::remove_dir_all(dir);
        let (mut w, _) = Wal::<(u32, String)>::open(dir, false).unwrap();
        for i in 0..50 {
            w.append(&[(i, format!("record {i}"))]).unwrap();
        }
        std::fs::read(dir.join("wal.log")).unwrap()
    }

    #[test]
    fn a_flipped_byte_mid_log_refuses_to_start_and_keeps_the_file() {
        let dir = std::env::temp_dir().join(format!("faultline-wal-flip-{}", std::process::id()));
        let mut bytes = fifty(&dir);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(dir.join("wal.log"), &bytes).unwrap();
        let err = match Wal::<(u32, String)>::open(&dir, false) {
            Err(e) => e,
            Ok((_, recs)) => panic!("opened a damaged log with {} records", recs.len()),
        };
        let text = err.to_string();
        assert!(
            matches!(err, WalError::Corrupt { offset, .. } if offset as usize <= mid),
            "{text}"
        );
        assert!(text.contains("a valid record follows"), "{text}");
        assert!(text.contains("mv "), "says how to recover: {text}");
        assert_eq!(
            std::fs::read(dir.join("wal.log")).unwrap(),
            bytes,
            "the evidence is kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_log_of_random_bytes_refuses_to_start() {
        let dir = std::env::temp_dir().join(format!("faultline-wal-rand-{}", std::process::id()));
        let len = fifty(&dir).len();
        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join("wal.log"), &noise).unwrap();
        let err = Wal::<(u32, String)>::open(&dir, false)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("header"), "{err}");
        assert_eq!(std::fs::read(dir.join("wal.log")).unwrap(), noise);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_last_record_is_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("faultline-wal-last-{}", std::process::id()));
        let mut bytes = fifty(&dir);
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        std::fs::write(dir.join("wal.log"), &bytes).unwrap();
        let (_, recs) = Wal::<(u32, String)>::open(&dir, false).unwrap();
        assert_eq!(recs.len(), 49);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
