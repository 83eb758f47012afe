//! Crafted images that cost the directory readers far more than their size: each must be refused
//! quickly, in bounded memory. The images are built here byte by byte (a few hundred KB to ~1.5
//! MB) so they can say exactly what a hostile one would.

use std::io::Cursor;
use std::time::{Duration, Instant};

use kiln_unattend::{IsoError, IsoTree};

const BLOCK: usize = 2048;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn block(img: &mut [u8], n: usize) -> &mut [u8] {
    &mut img[n * BLOCK..(n + 1) * BLOCK]
}

/// A volume descriptor of `kind` with identifier `id` at block `n`.
fn descriptor(img: &mut [u8], n: usize, kind: u8, id: &[u8; 5]) {
    let b = block(img, n);
    b[0] = kind;
    b[1..6].copy_from_slice(id);
    b[6] = 1;
}

/// An ISO 9660 directory record for a directory at `extent` of `size` bytes.
fn dir_record(extent: u32, size: u32, name: &[u8]) -> Vec<u8> {
    let len = 33 + name.len() + usize::from(name.len().is_multiple_of(2));
    let mut r = vec![0u8; len];
    r[0] = u8::try_from(len).unwrap();
    put32(&mut r, 2, extent);
    put32(&mut r, 10, size);
    r[25] = 0x02;
    r[32] = u8::try_from(name.len()).unwrap();
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

/// Peak resident memory of this process (nextest runs each test in a process of its own).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Reads `img`, expecting a refusal within bounds; returns the reason.
fn refused_within_bounds(img: Vec<u8>) -> String {
    let size_kib = img.len() / 1024;
    let t = Instant::now();
    let result = IsoTree::read(Cursor::new(img));
    let took = t.elapsed();
    let peak = peak_rss_mib();
    eprintln!("{size_kib} KiB image: {took:?}, peak RSS {peak} MiB");
    let reason = match result {
        Err(IsoError::Malformed { reason }) => reason,
        Err(other) => panic!("expected a malformed-image error, got {other:?}"),
        Ok(tree) => panic!("a hostile image was read: {} entries", tree.len()),
    };
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(peak < 256, "peak RSS {peak} MiB");
    reason
}

/// `r` directories in blocks 20.. whose records (8 per block, 200-byte names) point at each
/// other's blocks, each reaching to the end of the region: every directory is read from another
/// start, and each pass adds thousands of entries with paths twice as long.
fn iso9660_amplifier(r: usize) -> Vec<u8> {
    let start = 20;
    let mut img = vec![0u8; (start + r) * BLOCK];
    let region = |extent: usize| u32::try_from((start + r - extent) * BLOCK).unwrap();
    descriptor(&mut img, 16, 1, b"CD001");
    put16(block(&mut img, 16), 128, 2048);
    let root = dir_record(u32::try_from(start).unwrap(), region(start), &[0]);
    block(&mut img, 16)[156..156 + root.len()].copy_from_slice(&root);
    descriptor(&mut img, 17, 255, b"CD001");
    for b in 0..r {
        let mut pos = 0;
        for j in 0..8 {
            let target = start + (b * 8 + j) % r;
            let mut name = format!("d{b:05}{j}").into_bytes();
            name.resize(200, b'x');
            let rec = dir_record(u32::try_from(target).unwrap(), region(target), &name);
            block(&mut img, start + b)[pos..pos + rec.len()].copy_from_slice(&rec);
            pos += rec.len();
        }
    }
    img
}

// A 1.4 MB ISO 9660 image whose directories point into each other: kiln used to accept 1,962,800
// entries with long paths (3.4 GiB peak, 26 s in a debug build, ~0.5 GB of directory reads).
#[test]
fn iso9660_directories_pointing_into_each_other_are_refused_in_bounded_memory() {
    let reason = refused_within_bounds(iso9660_amplifier(700));
    assert!(reason.contains("add up to more than"), "{reason}");
}

/// A UDF volume (partition at sector 0) whose `r` directory File Entries all hold the same `d`
/// blocks of File Identifiers (250-byte names), each naming one of those directories.
fn udf_amplifier(r: usize, d: usize) -> Vec<u8> {
    let (fsd, root, fes) = (260, 261, 262);
    let data = fes + r;
    let mut img = vec![0u8; (data + d) * BLOCK];
    descriptor(&mut img, 16, 1, b"CD001");
    put16(block(&mut img, 16), 128, 2048);
    let rec = dir_record(20, 2048, &[0]);
    block(&mut img, 16)[156..156 + rec.len()].copy_from_slice(&rec);
    descriptor(&mut img, 17, 255, b"CD001");
    descriptor(&mut img, 18, 0, b"BEA01");
    descriptor(&mut img, 19, 0, b"NSR02");
    descriptor(&mut img, 20, 0, b"TEA01");
    let anchor = block(&mut img, 256);
    put16(anchor, 0, 2);
    put32(anchor, 16, 3 * 2048);
    put32(anchor, 20, 257);
    let pd = block(&mut img, 257);
    put16(pd, 0, 5);
    put16(pd, 22, 0);
    put32(pd, 188, 0);
    let lvd = block(&mut img, 258);
    put16(lvd, 0, 6);
    put32(lvd, 212, 2048);
    put32(lvd, 252, fsd);
    put32(lvd, 268, 1);
    lvd[440] = 1;
    lvd[441] = 6;
    put16(lvd, 444, 0);
    put16(block(&mut img, 259), 0, 8);
    let f = block(&mut img, fsd as usize);
    put16(f, 0, 256);
    put32(f, 404, root);
    // File Identifiers run on across blocks; the directory is exactly as long as they are.
    let fids = d * BLOCK / 292;
    let len = u32::try_from(fids * 292).unwrap();
    for at in std::iter::once(root as usize).chain(fes..fes + r) {
        let fe = block(&mut img, at);
        put16(fe, 0, 261);
        fe[27] = 4;
        put32(fe, 56, len);
        put32(fe, 172, 8);
        put32(fe, 176, len);
        put32(fe, 180, u32::try_from(data).unwrap());
    }
    for k in 0..fids {
        let at = data * BLOCK + k * 292;
        let fid = &mut img[at..at + 292];
        put16(fid, 0, 257);
        fid[18] = 0x02;
        fid[19] = 251;
        put32(fid, 24, u32::try_from(fes + k % r).unwrap());
        fid[38] = 8;
        let name = format!("d{k:06}");
        fid[39..39 + name.len()].copy_from_slice(name.as_bytes());
        fid[39 + name.len()..38 + 251].fill(b'x');
    }
    img
}

// A 1.7 MB UDF image whose directories all hold the same File Identifiers: kiln used to accept
// 633,304 entries with 500-byte paths (1.3 GiB peak, 13 s in a debug build).
#[test]
fn udf_directories_sharing_their_contents_are_refused_in_bounded_memory() {
    let reason = refused_within_bounds(udf_amplifier(300, 300));
    assert!(reason.contains("add up to more than"), "{reason}");
}

// Unrecorded extents read as zeros, so their size is not bounded by the image's: a directory
// claiming 60 MiB of them was allocated in full (the bound was 64 MiB per directory, none in total).
#[test]
fn udf_directory_larger_than_the_bound_is_refused_before_it_is_allocated() {
    let mut img = udf_amplifier(1, 1);
    let fe = block(&mut img, 261);
    put32(fe, 56, 60 << 20);
    put32(fe, 176, (1 << 30) | (60 << 20));
    let reason = refused_within_bounds(img);
    assert!(reason.contains("directory of `62914560` bytes"), "{reason}");
}
