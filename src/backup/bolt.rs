//! bbolt's file format, written once and read back: the file etcd's
//! backend is, and so the file `etcdctl snapshot status` and `etcdctl
//! snapshot restore` open.
//!
//! A bbolt file is a sequence of `PAGE_BYTES` pages. Pages 0 and 1 hold
//! the two meta copies (magic, version, page size, the root bucket's page,
//! the freelist's page, the high-water page id, the transaction id and an
//! FNV-1a 64 checksum); bbolt trusts the valid one with the higher
//! transaction id. Page 2 is the (empty) freelist. The rest is a B+tree of
//! buckets: the root bucket's leaves map each bucket name to a bucket
//! header (the bucket's root page, or 0 and an inline page right after the
//! header for a small bucket), and each bucket's leaves map keys to values.
//! A page whose contents outgrow one page runs on into `overflow` more.
//! Every integer is little-endian, as bbolt writes them on the machines
//! etcd runs on.
//!
//! Written by hand because no crate fits: the Rust ports of bbolt manage a
//! live, memory-mapped database file with its own locking and I/O, while a
//! backup needs one immutable image built in memory from sorted buckets,
//! and a reader that checks every offset instead of trusting the file.
//! The writer leaves no page unreachable and none free, so bbolt's own
//! consistency check (`tx.Check`, which `etcdctl snapshot status` runs)
//! passes.

use std::collections::BTreeMap;

/// bbolt's page size on the machines etcd runs on (the OS page size).
pub const PAGE_BYTES: usize = 4096;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER_BYTES: usize = 16;
/// A leaf element (flags, pos, ksize, vsize) and a branch element (pos,
/// ksize, pgid) are both 16 bytes.
const ELEMENT_BYTES: usize = 16;
/// A bucket header: root page id and sequence.
const BUCKET_HEADER_BYTES: usize = 16;
/// The bytes of a meta that its checksum covers (everything before it).
const META_SUMMED_BYTES: usize = 56;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
/// A leaf element whose value is a bucket header.
const BUCKET_ELEMENT: u32 = 0x01;
/// bbolt keeps a bucket inline (inside its parent's leaf) while its leaf
/// fits in a quarter page.
const INLINE_BUCKET_BYTES_MAX: usize = PAGE_BYTES / 4;
/// Pages 0 and 1: the two meta copies.
const META_PAGES: u64 = 2;
/// Where this writer puts the freelist (bbolt moves it as it pleases).
const FREELIST_PAGE_ID: u64 = 2;
/// The first page the trees may use: after the two metas and the freelist.
const FIRST_DATA_PAGE: u64 = 3;
/// No bbolt tree is this deep; a deeper one is a loop in a damaged file.
const TREE_DEPTH_MAX: usize = 32;

/// A bucket's entries: (key, value) in ascending key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One bucket: its name and its entries in ascending key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub name: Vec<u8>,
    pub entries: Entries,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoltError {
    #[error("not a bbolt file: {0}")]
    NotBolt(String),
    #[error("bbolt page {page}: {reason}")]
    Page { page: u64, reason: String },
}

/// The file holding these buckets: sorted by name, each with its entries
/// sorted by key and without duplicates (the caller's promise; checked in
/// debug builds).
pub fn write(buckets: &[Bucket]) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new());
    for bucket in buckets {
        let entries = bucket.entries.iter().cloned().map(Ok);
        writer
            .bucket(&bucket.name, entries)
            .expect("memory takes every write");
    }
    writer.finish().expect("memory takes every write").0
}

/// Where a file is written: memory, or a file through the disk seam.
/// Pages are written once each, in no particular order (the metas last).
pub trait PageOut {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
}

impl PageOut for Vec<u8> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let start = offset as usize;
        if self.len() < start + bytes.len() {
            self.resize(start + bytes.len(), 0);
        }
        self[start..start + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
}

/// Writes a bbolt file bucket by bucket, each bucket's entries as they
/// come: a bucket's leaves are written as they fill, and only each leaf's
/// first key stays in memory (for the branch pages above them), so a
/// bucket larger than memory can be written.
pub struct Writer<O: PageOut> {
    pages: Pages<O>,
    /// The root bucket's entries: each bucket's name and header.
    root: Vec<Element>,
}

impl<O: PageOut> Writer<O> {
    pub fn new(out: O) -> Writer<O> {
        Writer {
            pages: Pages {
                out,
                next: FIRST_DATA_PAGE,
            },
            root: Vec::new(),
        }
    }

    /// Adds a bucket after every one added before (names ascending), its
    /// entries in ascending key order without duplicates.
    pub fn bucket(
        &mut self,
        name: &[u8],
        entries: impl Iterator<Item = std::io::Result<(Vec<u8>, Vec<u8>)>>,
    ) -> std::io::Result<()> {
        debug_assert!(self
            .root
            .last()
            .is_none_or(|last| last.key.as_slice() < name));
        let mut entries = entries.map(|entry| {
            entry.map(|(key, value)| Element {
                flags: 0,
                key,
                value,
            })
        });
        // A bucket stays inline while its leaf fits a quarter page.
        let mut first = Vec::new();
        let mut first_bytes = PAGE_HEADER_BYTES;
        let mut overflowed = false;
        for entry in entries.by_ref() {
            let entry = entry?;
            first_bytes += ELEMENT_BYTES + entry.key.len() + entry.value.len();
            first.push(entry);
            if first_bytes > INLINE_BUCKET_BYTES_MAX {
                overflowed = true;
                break;
            }
        }
        let mut header = Vec::with_capacity(BUCKET_HEADER_BYTES);
        if !overflowed {
            header.extend_from_slice(&0u64.to_le_bytes());
            header.extend_from_slice(&0u64.to_le_bytes());
            header.extend_from_slice(&page_bytes(LEAF_PAGE, &first));
        } else {
            let root = self.pages.tree(first.into_iter().map(Ok).chain(entries))?;
            header.extend_from_slice(&root.to_le_bytes());
            header.extend_from_slice(&0u64.to_le_bytes());
        }
        self.root.push(Element {
            flags: BUCKET_ELEMENT,
            key: name.to_vec(),
            value: header,
        });
        Ok(())
    }

    /// Writes the root bucket, the freelist and the metas; the output,
    /// which holds the whole file, and its length in pages.
    pub fn finish(mut self) -> std::io::Result<(O, u64)> {
        let root_entries = std::mem::take(&mut self.root);
        let root = self.pages.tree(root_entries.into_iter().map(Ok))?;
        let freelist = page_header(FREELIST_PAGE_ID, FREELIST_PAGE, 0, 0);
        let mut page = vec![0; PAGE_BYTES];
        page[..PAGE_HEADER_BYTES].copy_from_slice(&freelist);
        self.pages
            .out
            .write_at(FREELIST_PAGE_ID * PAGE_BYTES as u64, &page)?;
        for txid in 0..2u64 {
            let meta = write_meta(txid, root, self.pages.next);
            let mut page = vec![0; PAGE_BYTES];
            page[..meta.len()].copy_from_slice(&meta);
            self.pages.out.write_at(txid * PAGE_BYTES as u64, &page)?;
        }
        Ok((self.pages.out, self.pages.next))
    }
}

/// Every bucket in the file, in name order, each with its entries in key
/// order. Refuses (never panics on) a file whose metas or pages do not
/// hold together.
pub fn read(file: &[u8]) -> Result<Vec<Bucket>, BoltError> {
    let meta = newest_meta(file)?;
    let reader = Reader {
        file,
        page_bytes: meta.page_bytes,
        high_water: meta.high_water,
        visited: Default::default(),
    };
    let mut buckets = Vec::new();
    for element in reader.tree(meta.root, 0)? {
        if element.flags & BUCKET_ELEMENT == 0 {
            return Err(BoltError::NotBolt(format!(
                "the root bucket holds a plain key {:?}",
                String::from_utf8_lossy(&element.key)
            )));
        }
        let entries = reader
            .bucket(&element.value)?
            .into_iter()
            .map(|entry| {
                if entry.flags & BUCKET_ELEMENT != 0 {
                    return Err(BoltError::NotBolt(format!(
                        "bucket {:?} holds a nested bucket, which no etcd backend has",
                        String::from_utf8_lossy(&element.key)
                    )));
                }
                Ok((entry.key, entry.value))
            })
            .collect::<Result<_, _>>()?;
        buckets.push(Bucket {
            name: element.key,
            entries,
        });
    }
    Ok(buckets)
}

/// bbolt's size of the file's data: the high-water page count times the
/// page size (what `etcdctl snapshot status` reports as its size).
pub fn data_bytes(file: &[u8]) -> Result<u64, BoltError> {
    let meta = newest_meta(file)?;
    Ok(meta.high_water * meta.page_bytes as u64)
}

struct Element {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn page_header(id: u64, flags: u16, count: u16, overflow: u32) -> [u8; PAGE_HEADER_BYTES] {
    let mut header = [0; PAGE_HEADER_BYTES];
    header[..8].copy_from_slice(&id.to_le_bytes());
    header[8..10].copy_from_slice(&flags.to_le_bytes());
    header[10..12].copy_from_slice(&count.to_le_bytes());
    header[12..16].copy_from_slice(&overflow.to_le_bytes());
    header
}

/// A leaf, branch or inline bucket page of `elements`, with id 0 and
/// no overflow: the page header, the element headers, then each key
/// (a leaf's followed by its value; a branch's child id sits in its
/// header). An element's `pos` counts from its own header.
fn page_bytes(flags: u16, elements: &[Element]) -> Vec<u8> {
    let count = u16::try_from(elements.len()).expect("a page holds under 2^16 elements");
    let mut page = page_header(0, flags, count, 0).to_vec();
    let mut data = Vec::new();
    let headers_end = PAGE_HEADER_BYTES + elements.len() * ELEMENT_BYTES;
    for (index, element) in elements.iter().enumerate() {
        let at = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
        let pos = u32::try_from(headers_end + data.len() - at).expect("a page under 4 GiB");
        let key_len = (element.key.len() as u32).to_le_bytes();
        data.extend_from_slice(&element.key);
        if flags == BRANCH_PAGE {
            // pos, ksize, then the child page id (the element's value).
            page.extend_from_slice(&pos.to_le_bytes());
            page.extend_from_slice(&key_len);
            page.extend_from_slice(&element.value);
        } else {
            // flags, pos, ksize, vsize; the value follows its key.
            page.extend_from_slice(&element.flags.to_le_bytes());
            page.extend_from_slice(&pos.to_le_bytes());
            page.extend_from_slice(&key_len);
            page.extend_from_slice(&(element.value.len() as u32).to_le_bytes());
            data.extend_from_slice(&element.value);
        }
    }
    page.extend_from_slice(&data);
    page
}

fn write_meta(txid: u64, root: u64, high_water: u64) -> Vec<u8> {
    let mut meta = Vec::with_capacity(META_SUMMED_BYTES + 8);
    meta.extend_from_slice(&MAGIC.to_le_bytes());
    meta.extend_from_slice(&VERSION.to_le_bytes());
    meta.extend_from_slice(&(PAGE_BYTES as u32).to_le_bytes());
    meta.extend_from_slice(&0u32.to_le_bytes()); // flags
    meta.extend_from_slice(&root.to_le_bytes());
    meta.extend_from_slice(&0u64.to_le_bytes()); // root bucket's sequence
    meta.extend_from_slice(&FREELIST_PAGE_ID.to_le_bytes());
    meta.extend_from_slice(&high_water.to_le_bytes());
    meta.extend_from_slice(&txid.to_le_bytes());
    let sum = fnv1a64(&meta);
    meta.extend_from_slice(&sum.to_le_bytes());
    let mut page = page_header(txid, META_PAGE, 0, 0).to_vec();
    page.extend_from_slice(&meta);
    page
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

/// The file being written: whole pages, `next` the first unused page id.
struct Pages<O: PageOut> {
    out: O,
    next: u64,
}

impl<O: PageOut> Pages<O> {
    /// Places a page built with id 0 and no overflow at the next free id,
    /// running on into overflow pages if it must; its id.
    fn put(&mut self, mut page: Vec<u8>) -> std::io::Result<u64> {
        let id = self.next;
        let pages = page.len().div_ceil(PAGE_BYTES).max(1);
        let overflow = u32::try_from(pages - 1).expect("a page under 16 TiB");
        page[..8].copy_from_slice(&id.to_le_bytes());
        page[12..16].copy_from_slice(&overflow.to_le_bytes());
        page.resize(pages * PAGE_BYTES, 0);
        self.out.write_at(id * PAGE_BYTES as u64, &page)?;
        self.next += pages as u64;
        Ok(id)
    }

    /// Writes a B+tree over `elements` (sorted): leaves packed up to a
    /// page each as the elements come (at least one, perhaps empty), then
    /// branch levels until one page is the root; its id.
    fn tree(
        &mut self,
        elements: impl Iterator<Item = std::io::Result<Element>>,
    ) -> std::io::Result<u64> {
        let leaf_size = |element: &Element| ELEMENT_BYTES + element.key.len() + element.value.len();
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut run: Vec<Element> = Vec::new();
        let mut run_bytes = PAGE_HEADER_BYTES;
        for element in elements {
            let element = element?;
            if !run.is_empty() && run_bytes + leaf_size(&element) > PAGE_BYTES {
                let first = run[0].key.clone();
                level.push((first, self.put(page_bytes(LEAF_PAGE, &run))?));
                run.clear();
                run_bytes = PAGE_HEADER_BYTES;
            }
            run_bytes += leaf_size(&element);
            run.push(element);
        }
        let first = run.first().map(|element| element.key.clone());
        level.push((
            first.unwrap_or_default(),
            self.put(page_bytes(LEAF_PAGE, &run))?,
        ));
        while level.len() > 1 {
            let children: Vec<Element> = level
                .into_iter()
                .map(|(key, id)| Element {
                    flags: 0,
                    key,
                    value: id.to_le_bytes().to_vec(),
                })
                .collect();
            let mut next_level = Vec::new();
            for run in packed(&children, |element| ELEMENT_BYTES + element.key.len()) {
                let id = self.put(page_bytes(BRANCH_PAGE, run))?;
                next_level.push((run[0].key.clone(), id));
            }
            level = next_level;
        }
        Ok(level[0].1)
    }
}

/// `elements` cut into consecutive runs that each fit one page (a run of
/// one element may not), and at least one run, perhaps empty.
fn packed(elements: &[Element], size: impl Fn(&Element) -> usize) -> Vec<&[Element]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = PAGE_HEADER_BYTES;
    for (index, element) in elements.iter().enumerate() {
        let element_bytes = size(element);
        if index > start && bytes + element_bytes > PAGE_BYTES {
            runs.push(&elements[start..index]);
            start = index;
            bytes = PAGE_HEADER_BYTES;
        }
        bytes += element_bytes;
    }
    runs.push(&elements[start..]);
    runs
}

struct Meta {
    page_bytes: usize,
    root: u64,
    high_water: u64,
    txid: u64,
}

/// The valid meta with the higher transaction id, as bbolt picks.
fn newest_meta(file: &[u8]) -> Result<Meta, BoltError> {
    let first = parse_meta(file, 0);
    let page_bytes = match &first {
        Ok(meta) => meta.page_bytes,
        Err(_) => PAGE_BYTES,
    };
    let second = parse_meta(file, page_bytes);
    match (first, second) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(meta), Err(_)) | (Err(_), Ok(meta)) => Ok(meta),
        (Err(error), Err(_)) => Err(error),
    }
}

fn parse_meta(file: &[u8], offset: usize) -> Result<Meta, BoltError> {
    let bytes = file
        .get(offset + PAGE_HEADER_BYTES..offset + PAGE_HEADER_BYTES + META_SUMMED_BYTES + 8)
        .ok_or_else(|| BoltError::NotBolt(format!("{} bytes hold no meta page", file.len())))?;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32_at(0) != MAGIC {
        return Err(BoltError::NotBolt(
            "the meta page has no bbolt magic".into(),
        ));
    }
    if u32_at(4) != VERSION {
        return Err(BoltError::NotBolt(format!(
            "bbolt file version {}, not {VERSION}",
            u32_at(4)
        )));
    }
    if u64_at(META_SUMMED_BYTES) != fnv1a64(&bytes[..META_SUMMED_BYTES]) {
        return Err(BoltError::NotBolt(
            "the meta page fails its checksum".into(),
        ));
    }
    let page_bytes = u32_at(8) as usize;
    if !(512..=1 << 20).contains(&page_bytes) || !page_bytes.is_power_of_two() {
        return Err(BoltError::NotBolt(format!("page size {page_bytes}")));
    }
    Ok(Meta {
        page_bytes,
        root: u64_at(16),
        high_water: u64_at(40),
        txid: u64_at(48),
    })
}

/// An element read back, owned.
struct ReadElement {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

struct Reader<'f> {
    file: &'f [u8],
    page_bytes: usize,
    high_water: u64,
    /// Pages already read: each is reachable once in a sound file.
    visited: std::cell::RefCell<std::collections::BTreeSet<u64>>,
}

impl Reader<'_> {
    /// A page's bytes (with its overflow pages), checked against the file
    /// and the high-water mark.
    fn page(&self, id: u64) -> Result<&[u8], BoltError> {
        let bad = |reason: String| BoltError::Page { page: id, reason };
        // A live bbolt file may keep any page but the metas anywhere.
        if id < META_PAGES || id >= self.high_water {
            return Err(bad(format!(
                "out of the pages {META_PAGES}..{}",
                self.high_water
            )));
        }
        let start = id as usize * self.page_bytes;
        let header = self
            .file
            .get(start..start + PAGE_HEADER_BYTES)
            .ok_or_else(|| bad("beyond the end of the file".into()))?;
        let overflow = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as u64;
        if id + overflow >= self.high_water {
            return Err(bad(format!(
                "its {overflow} overflow pages pass the high-water mark"
            )));
        }
        let end = start + (overflow as usize + 1) * self.page_bytes;
        self.file
            .get(start..end)
            .ok_or_else(|| bad("runs past the end of the file".into()))
    }

    /// Every leaf element under the tree rooted at page `id`, in order.
    fn tree(&self, id: u64, depth: usize) -> Result<Vec<ReadElement>, BoltError> {
        if depth > TREE_DEPTH_MAX {
            return Err(BoltError::Page {
                page: id,
                reason: "the tree is deeper than any bbolt tree (a loop)".into(),
            });
        }
        if !self.visited.borrow_mut().insert(id) {
            return Err(BoltError::Page {
                page: id,
                reason: "reached twice: the trees share or loop through it".into(),
            });
        }
        let page = self.page(id)?;
        let flags = u16::from_le_bytes(page[8..10].try_into().expect("2 bytes"));
        if flags & BRANCH_PAGE != 0 {
            let mut elements = Vec::new();
            for child in
                branch_children(page).map_err(|reason| BoltError::Page { page: id, reason })?
            {
                elements.extend(self.tree(child, depth + 1)?);
            }
            Ok(elements)
        } else if flags & LEAF_PAGE != 0 {
            leaf_elements(page).map_err(|reason| BoltError::Page { page: id, reason })
        } else {
            Err(BoltError::Page {
                page: id,
                reason: format!("neither a branch nor a leaf (flags {flags:#x})"),
            })
        }
    }

    /// A bucket's elements, from its header: inline, or a tree of its own.
    fn bucket(&self, header: &[u8]) -> Result<Vec<ReadElement>, BoltError> {
        let root = header
            .get(..8)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
            .ok_or_else(|| BoltError::NotBolt("a bucket header under 16 bytes".into()))?;
        if root != 0 {
            return self.tree(root, 0);
        }
        let inline = header
            .get(BUCKET_HEADER_BYTES..)
            .filter(|page| page.len() >= PAGE_HEADER_BYTES)
            .ok_or_else(|| BoltError::NotBolt("an inline bucket without its page".into()))?;
        leaf_elements(inline)
            .map_err(|reason| BoltError::NotBolt(format!("inline bucket: {reason}")))
    }
}

fn count_of(page: &[u8]) -> usize {
    u16::from_le_bytes(page[10..12].try_into().expect("2 bytes")) as usize
}

fn u32_in(page: &[u8], at: usize) -> Result<usize, String> {
    page.get(at..at + 4)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| format!("an element header at byte {at} runs past the page"))
}

fn leaf_elements(page: &[u8]) -> Result<Vec<ReadElement>, String> {
    (0..count_of(page))
        .map(|index| {
            let at = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
            let flags = u32_in(page, at)? as u32;
            let pos = at + u32_in(page, at + 4)?;
            let key_len = u32_in(page, at + 8)?;
            let value_len = u32_in(page, at + 12)?;
            let key = page
                .get(pos..pos + key_len)
                .ok_or_else(|| format!("element {index}'s key runs past the page"))?;
            let value = page
                .get(pos + key_len..pos + key_len + value_len)
                .ok_or_else(|| format!("element {index}'s value runs past the page"))?;
            Ok(ReadElement {
                flags,
                key: key.to_vec(),
                value: value.to_vec(),
            })
        })
        .collect()
}

fn branch_children(page: &[u8]) -> Result<Vec<u64>, String> {
    (0..count_of(page))
        .map(|index| {
            let at = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
            let child = page
                .get(at + 8..at + 16)
                .ok_or_else(|| format!("element {index} runs past the page"))?;
            Ok(u64::from_le_bytes(child.try_into().expect("8 bytes")))
        })
        .collect()
}

/// The buckets by name, for lookups.
pub fn by_name(buckets: Vec<Bucket>) -> BTreeMap<Vec<u8>, Entries> {
    buckets
        .into_iter()
        .map(|bucket| (bucket.name, bucket.entries))
        .collect()
}

#[cfg(test)]
mod tests;
