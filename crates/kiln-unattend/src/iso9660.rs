//! An ISO 9660 directory reader: lists the tree of a CD image (the virtio-win ISO, a Windows ISO)
//! by reading the volume descriptors and directory records only — never file contents: about one
//! 2 KiB block per directory.
//!
//! An image with a UDF volume (every Windows installation ISO; their ISO 9660 tree is a README stub)
//! is read through UDF ([`crate::udf`]). Otherwise names come from Joliet when the image has a
//! Joliet volume (what Windows reads), else from Rock Ridge `NM` entries, else from the plain
//! ISO 9660 names with `;1` stripped. Lookups are
//! case-insensitive, as they are for Windows Setup.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::bounds::{Budget, MAX_DEPTH};
use crate::error::IsoError;

/// Where the names of an [`IsoTree`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    Joliet,
    RockRidge,
    Iso9660,
    /// UDF (ECMA-167), as on Windows installation ISOs.
    Udf,
    /// Built with [`IsoTree::from_entries`], not read from an image.
    Synthetic,
}

/// One file or directory of an ISO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoEntry {
    /// `/`-separated, no leading slash, in the image's own case: `NetKVM/2k22/amd64`.
    pub path: String,
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Byte offset of the file's data in the image, for a file stored in one extent (what
    /// [`IsoTree::read_file`] reads); `None` for directories, multi-extent and UDF files.
    pub data_offset: Option<u64>,
}

impl IsoEntry {
    /// The last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The directory tree of an ISO image.
#[derive(Clone, Debug)]
pub struct IsoTree {
    /// Keyed by the lower-cased path, so lookups ignore case like Windows does.
    entries: BTreeMap<String, IsoEntry>,
    naming: Naming,
    /// The primary volume descriptor's volume identifier (trailing spaces removed).
    volume_id: Option<String>,
}

impl IsoTree {
    /// Reads the tree of the ISO at `path`.
    pub fn open(path: &Path) -> Result<Self, IsoError> {
        let file = File::open(path).map_err(IsoError::Io)?;
        Self::read(BufReader::new(file))
    }

    /// Reads the tree from any seekable reader.
    pub fn read<R: Read + Seek>(reader: R) -> Result<Self, IsoError> {
        Reader::new(reader)?.tree()
    }

    /// A tree from a list of paths (parents are added as directories); for tests and fakes.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        let mut tree = Self {
            entries: BTreeMap::new(),
            naming: Naming::Synthetic,
            volume_id: None,
        };
        for (path, is_dir) in entries {
            let path = path.trim_matches('/');
            let mut prefix = String::new();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                let last = prefix.len() == path.len();
                tree.insert(IsoEntry {
                    path: prefix.clone(),
                    is_dir: !last || is_dir,
                    size: 0,
                    data_offset: None,
                });
            }
        }
        tree
    }

    pub(crate) fn empty(naming: Naming) -> Self {
        Self {
            entries: BTreeMap::new(),
            naming,
            volume_id: None,
        }
    }

    /// The same tree with volume identifier `id` (for tests and fakes).
    #[must_use]
    pub fn with_volume_id(mut self, id: &str) -> Self {
        self.volume_id = Some(id.to_owned());
        self
    }

    fn volume(mut self, id: Option<String>) -> Self {
        self.volume_id = id.filter(|v| !v.is_empty());
        self
    }

    /// The volume identifier of the primary volume descriptor (what `LABEL=` names on Linux).
    pub fn volume_id(&self) -> Option<&str> {
        self.volume_id.as_deref()
    }

    /// Copies file `path` out of the image at `image` into `out`, streaming from its extent;
    /// refuses files larger than `max_bytes`, files not stored as one extent (see
    /// [`IsoEntry::data_offset`]) and an image that ends before the file does. Returns the bytes
    /// copied.
    pub fn copy_file(
        &self,
        image: &Path,
        path: &str,
        max_bytes: u64,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, IsoError> {
        let entry = self
            .get(path)
            .filter(|e| !e.is_dir)
            .ok_or_else(|| malformed(format!("no file `{path}` in the image")))?;
        let offset = entry.data_offset.ok_or_else(|| {
            malformed(format!(
                "`{path}` is not stored in one extent: kiln cannot read it"
            ))
        })?;
        if entry.size > max_bytes {
            return Err(malformed(format!(
                "`{path}` is {} bytes, more than the {max_bytes} allowed",
                entry.size
            )));
        }
        let mut file = File::open(image).map_err(IsoError::Io)?;
        file.seek(SeekFrom::Start(offset)).map_err(IsoError::Io)?;
        let copied = std::io::copy(&mut file.take(entry.size), out).map_err(IsoError::Io)?;
        if copied == entry.size {
            Ok(copied)
        } else {
            Err(malformed(format!(
                "`{path}` ends after {copied} of its {} bytes: the image is truncated",
                entry.size
            )))
        }
    }

    /// [`IsoTree::copy_file`] into memory.
    pub fn read_file(&self, image: &Path, path: &str, max_bytes: u64) -> Result<Vec<u8>, IsoError> {
        let mut out = Vec::new();
        self.copy_file(image, path, max_bytes, &mut out)?;
        Ok(out)
    }

    pub(crate) fn insert(&mut self, entry: IsoEntry) {
        let key = entry.path.to_lowercase();
        match self.entries.get_mut(&key) {
            // Multi-extent files appear once per extent.
            Some(existing) if !existing.is_dir && !entry.is_dir => {
                existing.size += entry.size;
                existing.data_offset = None;
            }
            Some(_) => {}
            None => {
                self.entries.insert(key, entry);
            }
        }
    }

    pub fn naming(&self) -> Naming {
        self.naming
    }

    /// The entry at `path`, ignoring case.
    pub fn get(&self, path: &str) -> Option<&IsoEntry> {
        self.entries.get(&path.trim_matches('/').to_lowercase())
    }

    /// The direct children of directory `dir` (`""` for the root), sorted by name.
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a IsoEntry> + 'a {
        let dir = dir.trim_matches('/').to_lowercase();
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let start = prefix.clone();
        let len = prefix.len();
        self.entries
            .range(start..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(move |(k, _)| !k[len..].contains('/'))
            .map(|(_, e)| e)
            .filter(|e| !e.path.is_empty())
    }

    /// Every entry, sorted by lower-cased path.
    pub fn entries(&self) -> impl Iterator<Item = &IsoEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub(crate) struct Reader<R> {
    inner: R,
    block: u64,
    /// Length of the image, so a corrupt size is rejected before anything is allocated for it.
    len: u64,
}

/// A directory record, decoded.
struct Record {
    extent: u32,
    size: u32,
    is_dir: bool,
    /// The raw file identifier.
    ident: Vec<u8>,
    system_use: Vec<u8>,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn malformed(reason: impl Into<String>) -> IsoError {
    IsoError::Malformed {
        reason: reason.into(),
    }
}

impl<R: Read + Seek> Reader<R> {
    fn new(mut inner: R) -> Result<Self, IsoError> {
        let len = inner.seek(SeekFrom::End(0)).map_err(IsoError::Io)?;
        Ok(Self {
            inner,
            block: 2048,
            len,
        })
    }

    pub(crate) fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, IsoError> {
        if offset.saturating_add(len as u64) > self.len {
            return Err(malformed(format!(
                "structure at byte {offset} lies beyond the end of the image"
            )));
        }
        self.inner
            .seek(SeekFrom::Start(offset))
            .map_err(IsoError::Io)?;
        let mut buf = vec![0; len];
        self.inner.read_exact(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                malformed(format!(
                    "structure at byte {offset} lies beyond the end of the image"
                ))
            } else {
                IsoError::Io(e)
            }
        })?;
        Ok(buf)
    }

    fn tree(mut self) -> Result<IsoTree, IsoError> {
        let mut primary_root = None;
        let mut volume_id: Option<String> = None;
        let mut joliet_root = None;
        let mut udf = false;
        let mut terminated = false;
        for i in 0..64u64 {
            let vd = match self.read_at((16 + i) * 2048, 2048) {
                Ok(vd) => vd,
                Err(IsoError::Malformed { .. }) if i == 0 => return Err(IsoError::NotIso),
                // The image may end right after the ISO 9660 descriptors.
                Err(IsoError::Malformed { .. }) if terminated => break,
                Err(e) => return Err(e),
            };
            match &vd[1..6] {
                b"CD001" if !terminated => {}
                // UDF's volume recognition sequence follows the ISO 9660 descriptors.
                b"BEA01" => continue,
                b"NSR02" | b"NSR03" => {
                    udf = true;
                    continue;
                }
                b"TEA01" => break,
                _ if i == 0 => return Err(IsoError::NotIso),
                _ if terminated => break,
                _ => {
                    return Err(malformed(format!(
                        "volume descriptor {} has no `CD001` tag",
                        16 + i
                    )));
                }
            }
            match vd[0] {
                1 => {
                    let block = u16::from_le_bytes([vd[128], vd[129]]);
                    if !matches!(block, 512 | 1024 | 2048) {
                        return Err(malformed(format!("logical block size `{block}`")));
                    }
                    self.block = u64::from(block);
                    primary_root = Some(vd[156..190].to_vec());
                    volume_id = Some(String::from_utf8_lossy(&vd[40..72]).trim_end().to_owned());
                }
                2 => {
                    let esc = &vd[88..91];
                    if esc == b"%/@" || esc == b"%/C" || esc == b"%/E" {
                        joliet_root = Some(vd[156..190].to_vec());
                    }
                }
                255 => terminated = true,
                _ => {}
            }
        }
        // Windows ISOs keep their files in UDF; their ISO 9660 tree holds a README only.
        if udf {
            return crate::udf::read_tree(&mut self).map(|t| t.volume(volume_id));
        }
        let primary_root = primary_root.ok_or(IsoError::NotIso)?;
        if let Some(root) = joliet_root {
            let root = parse_record(&root)?.ok_or_else(|| malformed("empty joliet root record"))?;
            return self
                .walk(root, Naming::Joliet, None)
                .map(|t| t.volume(volume_id));
        }
        let root = parse_record(&primary_root)?.ok_or_else(|| malformed("empty root record"))?;
        // Rock Ridge announces itself with an `SP` entry in the root's "." record.
        let first = self.read_dir(
            root.extent,
            root.size.min(self.block as u32),
            &mut Budget::default(),
        )?;
        let dot =
            parse_record(&first)?.ok_or_else(|| malformed("root directory has no `.` record"))?;
        let susp_skip = dot.system_use.get(..7).and_then(|sp| {
            (&sp[..2] == b"SP" && sp[4] == 0xBE && sp[5] == 0xEF).then_some(usize::from(sp[6]))
        });
        match susp_skip {
            Some(skip) => self.walk(root, Naming::RockRidge, Some(skip)),
            None => self.walk(root, Naming::Iso9660, None),
        }
        .map(|t| t.volume(volume_id))
    }

    fn read_dir(
        &mut self,
        extent: u32,
        size: u32,
        budget: &mut Budget,
    ) -> Result<Vec<u8>, IsoError> {
        budget.directory(u64::from(size))?;
        self.read_at(u64::from(extent) * self.block, size as usize)
    }

    fn walk(
        &mut self,
        root: Record,
        naming: Naming,
        susp_skip: Option<usize>,
    ) -> Result<IsoTree, IsoError> {
        let mut tree = IsoTree {
            entries: BTreeMap::new(),
            naming,
            volume_id: None,
        };
        let mut seen = HashSet::new();
        let mut budget = Budget::default();
        let mut queue = VecDeque::from([(String::new(), root.extent, root.size, 0usize)]);
        while let Some((dir, extent, size, depth)) = queue.pop_front() {
            if !seen.insert(extent) || depth > MAX_DEPTH {
                continue;
            }
            let data = self.read_dir(extent, size, &mut budget)?;
            let mut pos = 0usize;
            while pos < data.len() {
                let len = usize::from(data[pos]);
                if len == 0 {
                    // Records never cross a block boundary; the rest of this block is padding.
                    let block = self.block as usize;
                    pos = (pos / block + 1) * block;
                    continue;
                }
                let Some(raw) = data.get(pos..pos + len) else {
                    return Err(malformed(format!(
                        "directory record at byte {pos} of `/{dir}` overruns it"
                    )));
                };
                pos += len;
                let Some(rec) = parse_record(raw)? else {
                    continue;
                };
                if rec.ident == [0] || rec.ident == [1] {
                    continue;
                }
                let name = match naming {
                    Naming::Joliet => joliet_name(&rec.ident),
                    Naming::RockRidge => {
                        match self.rock_ridge_name(
                            &rec.system_use,
                            susp_skip.unwrap_or(0),
                            &mut budget,
                        )? {
                            Some(name) => name,
                            None => plain_name(&rec.ident, rec.is_dir),
                        }
                    }
                    Naming::Iso9660 | Naming::Synthetic | Naming::Udf => {
                        plain_name(&rec.ident, rec.is_dir)
                    }
                };
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(malformed(format!("invalid name `{name}` in `/{dir}`")));
                }
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                budget.entry(&path)?;
                if rec.is_dir {
                    queue.push_back((path.clone(), rec.extent, rec.size, depth + 1));
                }
                tree.insert(IsoEntry {
                    path,
                    is_dir: rec.is_dir,
                    size: if rec.is_dir { 0 } else { u64::from(rec.size) },
                    data_offset: (!rec.is_dir).then(|| u64::from(rec.extent) * self.block),
                });
            }
        }
        Ok(tree)
    }

    /// The Rock Ridge `NM` name in a System Use area, following `CE` continuation areas.
    fn rock_ridge_name(
        &mut self,
        system_use: &[u8],
        skip: usize,
        budget: &mut Budget,
    ) -> Result<Option<String>, IsoError> {
        let mut name: Option<Vec<u8>> = None;
        let mut area = system_use.get(skip..).unwrap_or_default().to_vec();
        for _ in 0..16 {
            let mut continuation = None;
            let mut pos = 0;
            while pos + 4 <= area.len() {
                let sig = &area[pos..pos + 2];
                let len = usize::from(area[pos + 2]);
                if len < 4 || pos + len > area.len() {
                    break;
                }
                let entry = &area[pos..pos + len];
                match sig {
                    b"NM" if len >= 5 => {
                        let flags = entry[4];
                        // CURRENT (2) and PARENT (4) name "." and ".."; never a real entry's name.
                        if flags & 0x06 == 0 {
                            name.get_or_insert_with(Vec::new)
                                .extend_from_slice(&entry[5..]);
                        }
                    }
                    b"CE" if len >= 28 => {
                        continuation =
                            Some((le32(&entry[4..]), le32(&entry[12..]), le32(&entry[20..])));
                    }
                    b"ST" => break,
                    _ => {}
                }
                pos += len;
            }
            let Some((block, offset, length)) = continuation else {
                break;
            };
            if length > 64 * 1024 {
                return Err(malformed("rock ridge continuation area too large"));
            }
            // Continuation areas are directory metadata: every record may have 16 of them.
            budget.directory(u64::from(length))?;
            area = self.read_at(
                u64::from(block) * self.block + u64::from(offset),
                length as usize,
            )?;
        }
        Ok(name.map(|n| String::from_utf8_lossy(&n).into_owned()))
    }
}

/// Decodes one directory record; `None` for a zero-length record.
fn parse_record(raw: &[u8]) -> Result<Option<Record>, IsoError> {
    let Some(&len) = raw.first() else {
        return Ok(None);
    };
    let len = usize::from(len);
    if len == 0 {
        return Ok(None);
    }
    if len < 34 || raw.len() < len {
        return Err(malformed(format!("directory record of `{len}` bytes")));
    }
    let name_len = usize::from(raw[32]);
    let name_end = 33 + name_len;
    if name_end > len {
        return Err(malformed("file identifier overruns its directory record"));
    }
    // A padding byte follows an even-length identifier.
    let su_start = (name_end + usize::from(name_len % 2 == 0)).min(len);
    Ok(Some(Record {
        extent: le32(&raw[2..]),
        size: le32(&raw[10..]),
        is_dir: raw[25] & 0x02 != 0,
        ident: raw[33..name_end].to_vec(),
        system_use: raw[su_start..len].to_vec(),
    }))
}

fn strip_version(name: &str) -> &str {
    name.split_once(';').map_or(name, |(n, _)| n)
}

fn joliet_name(ident: &[u8]) -> String {
    let units: Vec<u16> = ident
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16_lossy(&units);
    strip_version(&name).to_owned()
}

fn plain_name(ident: &[u8], is_dir: bool) -> String {
    let name = String::from_utf8_lossy(ident);
    let name = strip_version(&name);
    if is_dir {
        name.to_owned()
    } else {
        name.trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_trees_answer_case_insensitive_lookups_and_list_children() {
        let tree = IsoTree::from_entries([
            ("viostor/2k22/amd64/viostor.inf", false),
            ("NetKVM/2k22/amd64", true),
        ]);
        assert!(tree.get("VIOSTOR/2K22/AMD64").unwrap().is_dir);
        assert!(!tree.get("viostor/2k22/amd64/viostor.inf").unwrap().is_dir);
        let top: Vec<_> = tree.children("").map(|e| e.path.as_str()).collect();
        assert_eq!(top, ["NetKVM", "viostor"]);
        let kids: Vec<_> = tree.children("netkvm/2k22").map(|e| e.name()).collect();
        assert_eq!(kids, ["amd64"]);
    }

    #[test]
    fn garbage_is_not_an_iso() {
        let data = vec![0u8; 40 * 2048];
        assert!(matches!(
            IsoTree::read(std::io::Cursor::new(data)),
            Err(IsoError::NotIso)
        ));
        let short = vec![0u8; 100];
        assert!(matches!(
            IsoTree::read(std::io::Cursor::new(short)),
            Err(IsoError::NotIso)
        ));
    }
}
