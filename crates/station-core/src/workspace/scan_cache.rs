//! The stat cache of a workspace scan (`<store>/scan-cache`): for every directory of the last
//! tree written, its tree id and its entries (name, mode, object id and, for files, the stat
//! data they were hashed with). A file whose stat data is unchanged, and was verified when it
//! was hashed, is not read again.
//!
//! Layout: magic, then one block per directory in any order, then a table (directory path →
//! block offset and length), then the table's offset and the magic again. Every block and the
//! table carry a CRC-32: a torn or foreign file is ignored (the next scan reads every file),
//! never trusted. Blocks are read one directory at a time (`pread`), so memory holds the
//! table, not the whole cache.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"STNSCAN1";
/// A block or table larger than this is corrupt (a directory of ~8 million entries).
const MAX_SECTION: u64 = 1 << 30;

/// Stat data a file was hashed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) ino: u64,
}

/// One entry of a directory, as the tree has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: Vec<u8>,
    /// Git mode: 0o100644, 0o100755, 0o120000 or 0o40000.
    pub(crate) mode: u32,
    pub(crate) oid: [u8; 20],
    /// For files: the stat data, and whether it was old enough when hashed to be trusted
    /// (see `scan::VERIFY_MARGIN_NS`).
    pub(crate) stat: Option<(Stat, bool)>,
}

/// One directory: its tree id and entries (in tree order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) tree: [u8; 20],
    pub(crate) entries: Vec<Entry>,
}

/// The previous scan's cache, open for reading one directory at a time.
#[derive(Debug)]
pub(crate) struct CacheReader {
    file: File,
    table: HashMap<Vec<u8>, (u64, u32)>,
}

impl CacheReader {
    /// The cache at `path`, or `None` when there is none or it is not whole.
    pub(crate) fn open(path: &Path) -> Option<CacheReader> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        if len < 32 {
            return None;
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0).ok()?;
        let mut foot = [0u8; 16];
        file.read_exact_at(&mut foot, len - 16).ok()?;
        if &head != MAGIC || &foot[8..] != MAGIC {
            return None;
        }
        let table_at = u64::from_le_bytes(foot[..8].try_into().ok()?);
        let table_len = (len - 16).checked_sub(table_at)?;
        if table_at < 8 || table_len > MAX_SECTION {
            return None;
        }
        let mut bytes = vec![0u8; usize::try_from(table_len).ok()?];
        file.read_exact_at(&mut bytes, table_at).ok()?;
        let body = checked(&bytes)?;
        let mut r = Reader(body);
        let count = r.u32()?;
        let mut table = HashMap::with_capacity(count.min(1 << 20) as usize);
        for _ in 0..count {
            let path_len = r.u32()? as usize;
            let dir = r.take(path_len)?.to_vec();
            let (offset, block_len) = (r.u64()?, r.u32()?);
            if offset.checked_add(u64::from(block_len))? > table_at {
                return None;
            }
            table.insert(dir, (offset, block_len));
        }
        Some(CacheReader { file, table })
    }

    /// The block of directory `dir` (relative, `/`-separated, empty for the root), if it is
    /// in the cache and whole.
    pub(crate) fn block(&self, dir: &[u8]) -> Option<Block> {
        let &(offset, len) = self.table.get(dir)?;
        let mut bytes = vec![0u8; len as usize];
        self.file.read_exact_at(&mut bytes, offset).ok()?;
        decode_block(checked(&bytes)?)
    }
}

/// Writes the new cache next to the old one, then puts it in its place.
#[derive(Debug)]
pub(crate) struct CacheWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    written: u64,
    table: Vec<(Vec<u8>, u64, u32)>,
}

impl CacheWriter {
    pub(crate) fn create(path: &Path) -> std::io::Result<CacheWriter> {
        let tmp = path.with_extension("tmp");
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(&tmp)?);
        out.write_all(MAGIC)?;
        Ok(CacheWriter {
            out,
            tmp,
            path: path.to_path_buf(),
            written: MAGIC.len() as u64,
            table: Vec::new(),
        })
    }

    pub(crate) fn add(&mut self, dir: &[u8], block: &Block) -> std::io::Result<()> {
        let bytes = sealed(encode_block(block));
        let len = u32::try_from(bytes.len())
            .map_err(|_| std::io::Error::other("a directory too large for the scan cache"))?;
        self.out.write_all(&bytes)?;
        self.table.push((dir.to_vec(), self.written, len));
        self.written += u64::from(len);
        Ok(())
    }

    /// Write the table and put the file in place of the old cache.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        let mut table = Vec::new();
        put_u32(&mut table, self.table.len() as u32);
        for (dir, offset, len) in &self.table {
            put_u32(&mut table, dir.len() as u32);
            table.extend_from_slice(dir);
            table.extend_from_slice(&offset.to_le_bytes());
            put_u32(&mut table, *len);
        }
        self.out.write_all(&sealed(table))?;
        self.out.write_all(&self.written.to_le_bytes())?;
        self.out.write_all(MAGIC)?;
        self.out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&self.tmp, &self.path)
    }

    /// Drop the half-written file (the old cache stays).
    pub(crate) fn abandon(self) {
        let CacheWriter { out, tmp, .. } = self;
        drop(out);
        let _ = std::fs::remove_file(tmp);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `bytes` followed by their CRC-32.
fn sealed(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The body of a sealed section whose CRC-32 matches.
fn checked(bytes: &[u8]) -> Option<&[u8]> {
    let split = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(split);
    (crc32fast::hash(body).to_le_bytes() == crc).then_some(body)
}

fn encode_block(block: &Block) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + block.entries.len() * 80);
    out.extend_from_slice(&block.tree);
    put_u32(&mut out, block.entries.len() as u32);
    for e in &block.entries {
        put_u32(&mut out, e.mode);
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.oid);
        match e.stat {
            None => out.push(0),
            Some((s, verified)) => {
                out.push(if verified { 2 } else { 1 });
                out.extend_from_slice(&s.size.to_le_bytes());
                out.extend_from_slice(&s.mtime_ns.to_le_bytes());
                out.extend_from_slice(&s.ctime_ns.to_le_bytes());
                out.extend_from_slice(&s.ino.to_le_bytes());
            }
        }
    }
    out
}

fn decode_block(body: &[u8]) -> Option<Block> {
    let mut r = Reader(body);
    let tree = r.oid()?;
    let count = r.u32()?;
    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let mode = r.u32()?;
        let name_len = u16::from_le_bytes(r.take(2)?.try_into().ok()?) as usize;
        let name = r.take(name_len)?.to_vec();
        let oid = r.oid()?;
        let stat = match r.take(1)?[0] {
            0 => None,
            flag => {
                let stat = Stat {
                    size: r.u64()?,
                    mtime_ns: r.u64()? as i64,
                    ctime_ns: r.u64()? as i64,
                    ino: r.u64()?,
                };
                Some((stat, flag == 2))
            }
        };
        entries.push(Entry {
            name,
            mode,
            oid,
            stat,
        });
    }
    r.0.is_empty().then_some(Block { tree, entries })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn oid(&mut self) -> Option<[u8; 20]> {
        self.take(20)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Block {
        Block {
            tree: [7; 20],
            entries: vec![
                Entry {
                    name: b"a.rs".to_vec(),
                    mode: 0o100644,
                    oid: [1; 20],
                    stat: Some((
                        Stat {
                            size: 12,
                            mtime_ns: 1_700_000_000_123,
                            ctime_ns: -5,
                            ino: 99,
                        },
                        true,
                    )),
                },
                Entry {
                    name: b"sub".to_vec(),
                    mode: 0o40000,
                    oid: [2; 20],
                    stat: None,
                },
            ],
        }
    }

    #[test]
    fn blocks_round_trip_by_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scan-cache");
        let mut w = CacheWriter::create(&path).unwrap();
        w.add(b"src/sub", &sample()).unwrap();
        w.add(b"", &Block::clone(&sample())).unwrap();
        w.finish().unwrap();
        let r = CacheReader::open(&path).unwrap();
        assert_eq!(r.block(b"src/sub"), Some(sample()));
        assert_eq!(r.block(b""), Some(sample()));
        assert_eq!(r.block(b"src"), None);
    }

    #[test]
    fn a_damaged_cache_is_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scan-cache");
        let mut w = CacheWriter::create(&path).unwrap();
        w.add(b"", &sample()).unwrap();
        w.finish().unwrap();
        let whole = std::fs::read(&path).unwrap();
        // A flipped byte inside the block: the block is refused, not misread.
        let mut bytes = whole.clone();
        bytes[8 + 30] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(CacheReader::open(&path).unwrap().block(b""), None);
        // Cut short (a torn write): no cache at all.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        assert!(CacheReader::open(&path).is_none());
        // Not a cache.
        std::fs::write(&path, b"hello, this is not a scan cache at all").unwrap();
        assert!(CacheReader::open(&path).is_none());
    }
}
