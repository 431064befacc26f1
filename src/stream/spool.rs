//! The spool: batches NATS could not take, in an append-only, fsync'd file, until they
//! are published again.
//!
//! A record is `len: u32 LE | checksum: u64 LE | id_len: u16 LE | id | payload`, where
//! `len` counts everything after the checksum and the checksum is SipHash-1-3 of it.
//! Opening the file reads every record; a torn one at the end (a crash mid-append) is
//! cut off. Records are published from the front; once all are, the file is emptied.
//! A record published but not yet cut (a crash before the file was emptied) is
//! published again after a restart: its message id makes that harmless.
//!
//! One process per file: it is locked (`flock`) while open, so two nodes on one
//! data directory are refused instead of mixing their spools.

use siphasher::sip::SipHasher13;
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: u64 = 4 + 8;

/// A record read back: its message id, payload, and where the next record starts.
#[derive(Debug)]
pub struct Record {
    pub id: String,
    pub payload: Vec<u8>,
    pub end: u64,
}

#[derive(Debug)]
pub struct Spool {
    file: File,
    path: PathBuf,
    /// End of the last whole record.
    len: u64,
    /// Start of the first record not yet published.
    read_at: u64,
    max: u64,
}

fn checksum(body: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new();
    hasher.write(body);
    hasher.finish()
}

impl Spool {
    /// Opens (or creates) the spool at `path`, holding at most `max` bytes.
    pub fn open(path: &Path, max: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.try_lock().map_err(|_| {
            std::io::Error::other(format!(
                "{} is in use by another hop process; give each node its own data_dir",
                path.display()
            ))
        })?;
        let mut spool = Self {
            file,
            path: path.to_owned(),
            len: 0,
            read_at: 0,
            max,
        };
        let size = spool.file.metadata()?.len();
        let mut at = 0;
        while let Some(record) = spool.read_at_offset(at, size)? {
            at = record.end;
        }
        if at < size {
            tracing::warn!(
                spool = %path.display(),
                cut = size - at,
                "the spool ended in a torn record (a crash while writing it); cut off"
            );
            spool.file.set_len(at)?;
            spool.file.sync_all()?;
        }
        spool.len = at;
        Ok(spool)
    }

    /// The record at `at`, if a whole, intact one starts there before `size`.
    fn read_at_offset(&mut self, at: u64, size: u64) -> std::io::Result<Option<Record>> {
        if at + HEADER > size {
            return Ok(None);
        }
        self.file.seek(SeekFrom::Start(at))?;
        let mut header = [0u8; HEADER as usize];
        self.file.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let sum = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        if len < 2 || at + HEADER + len > size {
            return Ok(None);
        }
        let mut body = vec![0u8; len as usize];
        self.file.read_exact(&mut body)?;
        if checksum(&body) != sum {
            return Ok(None);
        }
        let id_len = u16::from_le_bytes([body[0], body[1]]) as usize;
        if 2 + id_len > body.len() {
            return Ok(None);
        }
        let Ok(id) = String::from_utf8(body[2..2 + id_len].to_vec()) else {
            return Ok(None);
        };
        let payload = body.split_off(2 + id_len);
        Ok(Some(Record {
            id,
            payload,
            end: at + HEADER + len,
        }))
    }

    /// Bytes held (records not yet published and those published but not yet cut).
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Whether every record has been published.
    pub fn is_drained(&self) -> bool {
        self.read_at >= self.len
    }

    /// Appends records and makes them durable (one fsync). Returns how many fitted
    /// under the size limit: the first ones, in order; the rest were not written.
    pub fn append(&mut self, records: &[(String, Vec<u8>)]) -> std::io::Result<usize> {
        let mut buffer = Vec::new();
        let mut fitted = 0;
        for (id, payload) in records {
            let len = 2 + id.len() + payload.len();
            if self.len + buffer.len() as u64 + HEADER + len as u64 > self.max {
                break;
            }
            let mut body = Vec::with_capacity(len);
            body.extend_from_slice(&(id.len() as u16).to_le_bytes());
            body.extend_from_slice(id.as_bytes());
            body.extend_from_slice(payload);
            buffer.extend_from_slice(&(len as u32).to_le_bytes());
            buffer.extend_from_slice(&checksum(&body).to_le_bytes());
            buffer.extend_from_slice(&body);
            fitted += 1;
        }
        if fitted > 0 {
            self.file.seek(SeekFrom::Start(self.len))?;
            if let Err(error) = self
                .file
                .write_all(&buffer)
                .and_then(|()| self.file.sync_data())
            {
                // Whatever part was written is not a record until it is whole.
                let _ = self.file.set_len(self.len);
                return Err(error);
            }
            self.len += buffer.len() as u64;
        }
        Ok(fitted)
    }

    /// Up to `max` records from the first one not yet published, in order.
    pub fn peek(&mut self, max: usize) -> std::io::Result<Vec<Record>> {
        let mut records = Vec::new();
        let mut at = self.read_at;
        while records.len() < max {
            match self.read_at_offset(at, self.len)? {
                Some(record) => {
                    at = record.end;
                    records.push(record);
                }
                None => break,
            }
        }
        Ok(records)
    }

    /// Marks every record before `end` published; once all are, empties the file.
    pub fn consumed(&mut self, end: u64) -> std::io::Result<()> {
        self.read_at = end.min(self.len);
        if self.is_drained() {
            self.file.set_len(0)?;
            self.file.sync_all()?;
            self.len = 0;
            self.read_at = 0;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> (String, Vec<u8>) {
        (format!("node-{n}"), vec![n; 100 + n as usize])
    }

    #[test]
    fn records_come_back_in_order_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.spool");
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!(spool.append(&[record(1), record(2)]).unwrap(), 2);
        assert_eq!(spool.append(&[record(3)]).unwrap(), 1);
        let first = spool.peek(1).unwrap();
        assert_eq!(first[0].id, "node-1");
        spool.consumed(first[0].end).unwrap();
        drop(spool);
        // Reopened (say, after a crash): everything not cut is there again, in order.
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        let records = spool.peek(10).unwrap();
        let ids: Vec<_> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["node-1", "node-2", "node-3"]);
        assert_eq!(records[2].payload, record(3).1);
        spool.consumed(records[2].end).unwrap();
        assert!(spool.is_drained());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.spool");
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        spool.append(&[record(1), record(2)]).unwrap();
        let whole = spool.bytes();
        drop(spool);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole - 7).unwrap();
        drop(file);
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        let ids: Vec<_> = spool.peek(10).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["node-1"]);
        // A damaged byte inside a record fails its checksum the same way.
        spool.append(&[record(5)]).unwrap();
        assert_eq!(spool.peek(10).unwrap().len(), 2);
    }

    #[test]
    fn a_full_spool_takes_what_fits_and_a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.spool");
        let mut spool = Spool::open(&path, 300).unwrap();
        assert_eq!(spool.append(&[record(1), record(2), record(3)]).unwrap(), 2);
        assert!(spool.bytes() <= 300);
        let error = Spool::open(&path, 300).unwrap_err();
        assert!(error.to_string().contains("another hop process"), "{error}");
    }
}
