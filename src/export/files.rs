//! Segment files: lines split into parts of at most `max_rows_per_file`, optionally gzipped or
//! zipped, each with its size and SHA-256. One part is held in memory at a time, so memory is
//! bounded by the part size, not by the segment size.

use std::io::Write;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::storage::Location;

pub use crate::job::platforms::Compress;

/// One file written.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// Path relative to the run folder.
    pub path: String,
    /// Data rows (the header line not counted).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// Bytes kept free below the byte cap for a compressed part's archive headers (a zip entry's
/// local header, central directory and end record, with the part's name, are well under this).
const ARCHIVE_ROOM: usize = 1024;

/// Writes the parts of one file set: `<stem>_part000.<ext>`, `<stem>_part001.<ext>`, ...
pub struct PartWriter {
    folder: Location,
    rel_folder: String,
    stem: String,
    ext: &'static str,
    header: Option<Vec<u8>>,
    compress: Compress,
    max_rows: usize,
    max_bytes: Option<u64>,
    buf: Vec<u8>,
    rows_in_buf: usize,
    /// Files written so far.
    pub files: Vec<FileEntry>,
    /// Rows written so far.
    pub rows: u64,
    /// Parts being compressed and uploaded, oldest first.
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<FileEntry>>>,
}

impl PartWriter {
    /// A writer of parts below `folder` (shown as `rel_folder` in the manifest).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        folder: Location,
        rel_folder: String,
        stem: String,
        ext: &'static str,
        header: Option<String>,
        compress: Compress,
        max_rows: usize,
        max_bytes: Option<u64>,
    ) -> PartWriter {
        PartWriter {
            folder,
            rel_folder,
            stem,
            ext,
            header: header.map(|h| (h + "\n").into_bytes()),
            compress,
            max_rows: max_rows.max(1),
            max_bytes,
            buf: Vec::new(),
            rows_in_buf: 0,
            files: Vec::new(),
            rows: 0,
            in_flight: std::collections::VecDeque::new(),
        }
    }

    /// Bytes of text a part may hold so that its file stays within `max_bytes`: the cap itself
    /// for plain text, less room for the archive's own headers when compressed (compression
    /// only shrinks hex and digits, so the compressed part is within the cap too).
    fn text_limit(&self) -> Option<usize> {
        self.max_bytes.map(|m| match self.compress {
            Compress::None => m as usize,
            _ => (m as usize).saturating_sub(ARCHIVE_ROOM),
        })
    }

    /// Appends lines (each ending in `\n`) given as one buffer and the end offset of each line.
    /// A part ends at `max_rows` lines, or before the line that would take it over the byte cap.
    pub async fn push(&mut self, bytes: &[u8], ends: &[usize]) -> Result<()> {
        let limit = self.text_limit().unwrap_or(usize::MAX);
        let mut start = 0usize;
        for &end in ends {
            if self.rows_in_buf > 0 && self.buf.len() + (end - start) > limit {
                self.flush_part().await?;
            }
            if self.rows_in_buf == 0 && self.buf.is_empty() {
                if let Some(h) = &self.header {
                    self.buf.extend_from_slice(h);
                }
            }
            self.buf.extend_from_slice(&bytes[start..end]);
            self.rows_in_buf += 1;
            start = end;
            if self.rows_in_buf == self.max_rows {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> Result<()> {
        let n = self.files.len() + self.in_flight.len();
        let inner = format!("{}_part{n:03}.{}", self.stem, self.ext);
        let text = std::mem::take(&mut self.buf);
        let rows = self.rows_in_buf as u64;
        self.rows_in_buf = 0;
        let compress = self.compress;
        let max_bytes = self.max_bytes;
        let folder = self.folder.clone();
        let rel_folder = self.rel_folder.clone();
        // Compression, checksum and upload run beside the next part's rendering; at most
        // `IN_FLIGHT` parts are held at once, and the files keep their order.
        let task = tokio::spawn(async move {
            let (name, bytes, sha) =
                tokio::task::spawn_blocking(move || compress_part(compress, inner, text))
                    .await
                    .map_err(|e| Error::internal(format!("file writer: {e}")))??;
            let size = bytes.len() as u64;
            if let Some(max) = max_bytes {
                if size > max {
                    return Err(Error::data(
                        format!("{rel_folder}/{name}"),
                        format!("the file would be {size} bytes, over the limit of {max} bytes: one line with its header is longer than that; raise `max_bytes_per_file`"),
                    ));
                }
            }
            let loc = folder.child(&name)?;
            crate::storage::write::put_bytes(&loc, bytes).await?;
            Ok(FileEntry {
                path: format!("{rel_folder}/{name}"),
                rows,
                bytes: size,
                sha256: sha,
            })
        });
        self.in_flight.push_back(task);
        if self.in_flight.len() > IN_FLIGHT {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Waits for the oldest part in flight and records its file.
    async fn settle_oldest(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.pop_front() {
            let entry = task
                .await
                .map_err(|e| Error::internal(format!("file writer: {e}")))??;
            self.rows += entry.rows;
            self.files.push(entry);
        }
        Ok(())
    }

    /// Writes the last part (if it holds any rows) and returns the files.
    pub async fn finish(mut self) -> Result<(Vec<FileEntry>, u64)> {
        if self.rows_in_buf > 0 {
            self.flush_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok((std::mem::take(&mut self.files), self.rows))
    }
}

impl Drop for PartWriter {
    /// A writer given up (a failed export) stops its uploads: nothing lands after the failure.
    fn drop(&mut self) {
        for task in &self.in_flight {
            task.abort();
        }
    }
}

/// Parts compressed and uploaded at once per file set, beside the rendering of the next.
const IN_FLIGHT: usize = 2;

/// One part's file name, bytes (compressed as asked) and SHA-256.
fn compress_part(
    compress: Compress,
    inner_name: String,
    text: Vec<u8>,
) -> Result<(String, Vec<u8>, String)> {
    let (name, bytes) = match compress {
        Compress::None => (inner_name, text),
        Compress::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::default());
            enc.write_all(&text)
                .map_err(|e| Error::internal(format!("gzip: {e}")))?;
            let out = enc
                .finish()
                .map_err(|e| Error::internal(format!("gzip: {e}")))?;
            (format!("{inner_name}.gz"), out)
        }
        Compress::Zip => {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(0o644);
            w.start_file(inner_name.as_str(), opts)
                .map_err(|e| Error::internal(format!("zip: {e}")))?;
            w.write_all(&text)
                .map_err(|e| Error::internal(format!("zip: {e}")))?;
            let out = w
                .finish()
                .map_err(|e| Error::internal(format!("zip: {e}")))?
                .into_inner();
            let stem = inner_name
                .strip_suffix(".txt")
                .or_else(|| inner_name.strip_suffix(".csv"))
                .unwrap_or(&inner_name)
                .to_string();
            (format!("{stem}.zip"), out)
        }
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((name, bytes, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &std::path::Path, max_rows: usize, max_bytes: Option<u64>) -> PartWriter {
        let folder = crate::storage::locate(&format!("{}/", dir.display())).unwrap();
        PartWriter::new(
            folder,
            "seg/target".into(),
            "seg".into(),
            "txt",
            None,
            Compress::None,
            max_rows,
            max_bytes,
        )
    }

    fn lines(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            bytes.extend_from_slice(format!("{i:032x}\n").as_bytes());
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    /// Parts finished on their own tasks come back in order, each with its rows and checksum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_in_flight_are_recorded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), 7, None);
        let (bytes, ends) = lines(50);
        w.push(&bytes, &ends).await.unwrap();
        let (files, rows) = w.finish().await.unwrap();
        assert_eq!(rows, 50);
        assert_eq!(files.len(), 8);
        for (i, f) in files.iter().enumerate() {
            assert_eq!(f.path, format!("seg/target/seg_part{i:03}.txt"));
            assert_eq!(f.rows, if i < 7 { 7 } else { 1 });
            let got = std::fs::read(dir.path().join(format!("seg_part{i:03}.txt"))).unwrap();
            assert_eq!(f.sha256, hex::encode(Sha256::digest(&got)));
            assert_eq!(f.bytes, got.len() as u64);
        }
    }

    /// A byte cap splits the lines into parts each within it (33-byte lines, 200-byte cap: six
    /// lines a part), in order, every line once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_split_at_the_byte_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), 1_000, Some(200));
        let (bytes, ends) = lines(20);
        w.push(&bytes, &ends).await.unwrap();
        let (files, rows) = w.finish().await.unwrap();
        assert_eq!(rows, 20);
        assert_eq!(
            files.iter().map(|f| f.rows).collect::<Vec<_>>(),
            [6, 6, 6, 2]
        );
        let mut all = Vec::new();
        for (i, f) in files.iter().enumerate() {
            assert!(f.bytes <= 200, "{f:?}");
            all.extend(std::fs::read(dir.path().join(format!("seg_part{i:03}.txt"))).unwrap());
        }
        assert_eq!(all, bytes, "every line once, in order");
    }

    /// A line longer than the cap cannot be split: the file set fails, naming the file and the
    /// fix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_line_over_the_byte_cap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), 1_000, Some(20));
        let (bytes, ends) = lines(3);
        w.push(&bytes, &ends).await.unwrap();
        let e = w.finish().await.unwrap_err().to_string();
        assert!(e.contains("seg/target/seg_part000.txt"), "{e}");
        assert!(e.contains("max_bytes_per_file"), "{e}");
        assert!(!dir.path().join("seg_part000.txt").exists());
    }
}
