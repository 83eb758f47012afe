//! A UDF (ECMA-167 / OSTA UDF 1.02–2.01) directory reader, for Windows installation ISOs: their
//! ISO 9660 tree is a `README.TXT` stub and the real files (`sources/install.wim`,
//! `sources/<lang>/`) exist only in UDF.
//!
//! Reads the anchor at sector 256, the volume descriptors, the file set descriptor, then walks
//! File Entries and File Identifier Descriptors. Like the ISO 9660 reader it reads descriptors
//! only, one 2 KiB block per file or directory entry plus the directories' contents. Type-1
//! partition maps only: UDF 2.50 metadata partitions (Blu-ray style) are reported as unsupported.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Seek};

use crate::bounds::{Budget, MAX_DEPTH};
use crate::error::IsoError;
use crate::iso9660::{IsoEntry, IsoTree, Naming, Reader, malformed};

const SECTOR: u64 = 2048;

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from(u32le(b, at)) | (u64::from(u32le(b, at + 4)) << 32)
}

/// A `long_ad` / ICB location: a block within a partition (by partition reference number).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Lba {
    block: u32,
    partition: u16,
}

struct Volume {
    /// Start sector of each partition, by partition reference number (index into the maps).
    partition_starts: Vec<u64>,
}

impl Volume {
    fn sector(&self, at: Lba) -> Result<u64, IsoError> {
        let start = self
            .partition_starts
            .get(usize::from(at.partition))
            .ok_or_else(|| {
                malformed(format!(
                    "udf partition reference `{}` has no map",
                    at.partition
                ))
            })?;
        Ok(start + u64::from(at.block))
    }
}

/// A decoded File Entry: what kind of file, how long, and (for directories) its contents.
struct Entry {
    is_dir: bool,
    size: u64,
    data: Vec<u8>,
}

fn read_block<R: Read + Seek>(r: &mut Reader<R>, sector: u64) -> Result<Vec<u8>, IsoError> {
    r.read_at(sector * SECTOR, SECTOR as usize)
}

fn tag_id(block: &[u8]) -> u16 {
    u16le(block, 0)
}

/// Reads the volume: partition starts by reference number and the root directory's ICB.
fn volume<R: Read + Seek>(r: &mut Reader<R>) -> Result<(Volume, Lba), IsoError> {
    let anchor = read_block(r, 256)?;
    if tag_id(&anchor) != 2 {
        return Err(malformed(
            "udf anchor volume descriptor pointer missing at sector 256",
        ));
    }
    let vds_len = u32le(&anchor, 16);
    let vds_loc = u64::from(u32le(&anchor, 20));
    let mut partitions: Vec<(u16, u64)> = Vec::new();
    let mut maps: Vec<u16> = Vec::new();
    let mut fsd: Option<Lba> = None;
    for i in 0..u64::from(vds_len / SECTOR as u32).min(256) {
        let d = read_block(r, vds_loc + i)?;
        match tag_id(&d) {
            5 => partitions.push((u16le(&d, 22), u64::from(u32le(&d, 188)))),
            6 => {
                let block_size = u32le(&d, 212);
                if u64::from(block_size) != SECTOR {
                    return Err(malformed(format!("udf logical block size `{block_size}`")));
                }
                fsd = Some(Lba {
                    block: u32le(&d, 252),
                    partition: u16le(&d, 256),
                });
                let count = u32le(&d, 268) as usize;
                let mut pos = 440;
                for _ in 0..count.min(64) {
                    let Some(&kind) = d.get(pos) else { break };
                    let len = usize::from(*d.get(pos + 1).unwrap_or(&0));
                    if len == 0 || pos + len > d.len() {
                        return Err(malformed("udf partition map overruns its descriptor"));
                    }
                    match kind {
                        1 if len >= 6 => maps.push(u16le(&d, pos + 4)),
                        _ => {
                            return Err(malformed(
                                "udf partition map of type 2 (virtual, sparable or metadata partitions) is not supported",
                            ));
                        }
                    }
                    pos += len;
                }
            }
            8 => break,
            _ => {}
        }
    }
    let fsd = fsd.ok_or_else(|| malformed("udf logical volume descriptor missing"))?;
    let partition_starts = maps
        .iter()
        .map(|number| {
            partitions
                .iter()
                .find(|(n, _)| n == number)
                .map(|(_, start)| *start)
                .ok_or_else(|| malformed(format!("udf partition `{number}` has no descriptor")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let volume = Volume { partition_starts };
    let fsd_block = read_block(r, volume.sector(fsd)?)?;
    if tag_id(&fsd_block) != 256 {
        return Err(malformed("udf file set descriptor missing"));
    }
    let root = Lba {
        block: u32le(&fsd_block, 404),
        partition: u16le(&fsd_block, 408),
    };
    Ok((volume, root))
}

/// Reads a File Entry (tag 261) or Extended File Entry (tag 266); directory contents included.
fn file_entry<R: Read + Seek>(
    r: &mut Reader<R>,
    vol: &Volume,
    at: Lba,
    want_data: Option<&mut Budget>,
) -> Result<Entry, IsoError> {
    let fe = read_block(r, vol.sector(at)?)?;
    let (ea_len_at, ad_start) = match tag_id(&fe) {
        261 => (168, 176),
        266 => (208, 216),
        other => {
            return Err(malformed(format!(
                "udf file entry expected, found tag `{other}`"
            )));
        }
    };
    let file_type = fe[27];
    let ad_type = u16le(&fe, 34) & 7;
    let size = u64le(&fe, 56);
    let ea_len = u32le(&fe, ea_len_at) as usize;
    let ad_len = u32le(&fe, ea_len_at + 4) as usize;
    let is_dir = file_type == 4;
    let ads = fe
        .get(ad_start + ea_len..ad_start + ea_len + ad_len)
        .ok_or_else(|| malformed("udf allocation descriptors overrun their file entry"))?;
    let Some(budget) = want_data.filter(|_| is_dir) else {
        return Ok(Entry {
            is_dir,
            size,
            data: Vec::new(),
        });
    };
    // Charged before anything is read or zero-filled: unrecorded extents cost memory, not image.
    budget.directory(size)?;
    let mut data = Vec::new();
    match ad_type {
        // Short allocation descriptors: 8 bytes, block within the entry's own partition.
        0 | 1 => {
            let width = if ad_type == 0 { 8 } else { 16 };
            for ad in ads.chunks_exact(width) {
                let raw_len = u32le(ad, 0);
                let (kind, len) = (raw_len >> 30, raw_len & 0x3FFF_FFFF);
                if len == 0 {
                    break;
                }
                if kind == 3 {
                    return Err(malformed(
                        "udf allocation descriptor continuation is not supported",
                    ));
                }
                let extent = Lba {
                    block: u32le(ad, 4),
                    partition: if ad_type == 0 {
                        at.partition
                    } else {
                        u16le(ad, 8)
                    },
                };
                // Never read (or allocate) past the directory's recorded size.
                let take = u64::from(len).min(size - data.len() as u64) as usize;
                if kind == 0 {
                    data.extend(r.read_at(vol.sector(extent)? * SECTOR, take)?);
                } else {
                    // Allocated or unallocated but unrecorded: reads as zeros.
                    data.resize(data.len() + take, 0);
                }
                if data.len() as u64 >= size {
                    break;
                }
            }
        }
        // Embedded: the directory's bytes are the allocation descriptor area itself.
        3 => data.extend_from_slice(ads),
        other => {
            return Err(malformed(format!(
                "udf allocation descriptor type `{other}`"
            )));
        }
    }
    data.truncate(size as usize);
    Ok(Entry { is_dir, size, data })
}

/// Decodes an OSTA compressed unicode file identifier.
fn name(ident: &[u8]) -> Result<String, IsoError> {
    match ident.split_first() {
        Some((8, rest)) => Ok(rest.iter().map(|&b| char::from(b)).collect()),
        Some((16, rest)) => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Ok(String::from_utf16_lossy(&units))
        }
        _ => Err(malformed(
            "udf file identifier with an unknown compression id",
        )),
    }
}

/// The tree of the UDF volume.
pub(crate) fn read_tree<R: Read + Seek>(r: &mut Reader<R>) -> Result<IsoTree, IsoError> {
    let (vol, root) = volume(r)?;
    let mut tree = IsoTree::empty(Naming::Udf);
    let mut seen = HashSet::new();
    let mut budget = Budget::default();
    let mut queue = VecDeque::from([(String::new(), root, 0usize)]);
    while let Some((dir, at, depth)) = queue.pop_front() {
        if !seen.insert(at) || depth > MAX_DEPTH {
            continue;
        }
        let entry = file_entry(r, &vol, at, Some(&mut budget))?;
        if !entry.is_dir {
            return Err(malformed(format!(
                "udf directory `/{dir}` is not a directory"
            )));
        }
        let data = entry.data;
        let mut pos = 0;
        while pos + 38 <= data.len() {
            let fid = &data[pos..];
            if tag_id(fid) != 257 {
                return Err(malformed(format!(
                    "udf file identifier expected in `/{dir}`"
                )));
            }
            let characteristics = fid[18];
            let name_len = usize::from(fid[19]);
            let icb = Lba {
                block: u32le(fid, 24),
                partition: u16le(fid, 28),
            };
            let iu_len = usize::from(u16le(fid, 36));
            let total = (38 + iu_len + name_len + 3) & !3;
            let ident = fid
                .get(38 + iu_len..38 + iu_len + name_len)
                .ok_or_else(|| malformed(format!("udf file identifier overruns `/{dir}`")))?;
            pos += total;
            // Parent link (0x08) and deleted (0x04) entries are not files.
            if characteristics & 0x0C != 0 {
                continue;
            }
            let child = name(ident)?;
            if child.is_empty() || child.contains('/') || child == "." || child == ".." {
                return Err(malformed(format!("invalid name `{child}` in `/{dir}`")));
            }
            let path = if dir.is_empty() {
                child
            } else {
                format!("{dir}/{child}")
            };
            budget.entry(&path)?;
            let is_dir = characteristics & 0x02 != 0;
            let size = if is_dir {
                queue.push_back((path.clone(), icb, depth + 1));
                0
            } else {
                file_entry(r, &vol, icb, None)?.size
            };
            tree.insert(IsoEntry {
                path,
                is_dir,
                size,
                data_offset: None,
            });
        }
    }
    Ok(tree)
}
