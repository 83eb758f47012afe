//! Evidence, read from the disk itself, that an installer wrote a bootable system: a partition
//! table (MBR or GPT) and a boot path (boot code in the MBR for BIOS, an EFI System Partition for
//! UEFI). Read with `qemu-img dd` and the format kiln gave the disk (never probed: a hostile
//! guest wrote these bytes), then parsed here, bounds-checked, without trusting a single field.

use std::path::Path;

use crate::domain_xml::DiskFormat;
use crate::qemu_img::DiskTool;

/// Sectors read: the MBR, the GPT header and 128 partition entries of 128 bytes (LBA 2–33).
const HEAD_SECTORS: u32 = 34;

/// The GPT partition type of an EFI System Partition, as stored (mixed-endian GUID).
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];

/// What was found on a bootable disk, for the step log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BootEvidence {
    /// A DOS partition table with boot code in the MBR.
    Mbr {
        /// Partitions in use.
        partitions: usize,
        /// Partitions marked active (bootable).
        active: usize,
    },
    /// A GPT with an EFI System Partition.
    Gpt {
        /// Partition entries in use.
        partitions: usize,
    },
}

impl std::fmt::Display for BootEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootEvidence::Mbr { partitions, active } => write!(
                f,
                "DOS partition table, {partitions} partition(s), {active} active, boot code in the MBR"
            ),
            BootEvidence::Gpt { partitions } => write!(
                f,
                "GPT, {partitions} partition(s), one of them an EFI System Partition"
            ),
        }
    }
}

/// Reads the head of `disk` and looks for a bootable layout.
pub(crate) fn bootable(
    tool: &dyn DiskTool,
    disk: &Path,
    format: DiskFormat,
) -> Result<BootEvidence, String> {
    let head = tool
        .head(disk, format, HEAD_SECTORS)
        .map_err(|e| format!("its disk could not be read back: {e}"))?;
    inspect(&head)
}

/// The bootable layout in the first sectors of a disk.
pub(crate) fn inspect(head: &[u8]) -> Result<BootEvidence, String> {
    if head.len() < 512 || head[510..512] != [0x55, 0xaa] {
        return Err("the disk has no partition table (no boot signature in sector 0)".into());
    }
    let entries = &head[446..510];
    let gpt_protective = entries.chunks(16).any(|e| e[4] == 0xee);
    if gpt_protective {
        return gpt(head);
    }
    let used: Vec<&[u8]> = entries.chunks(16).filter(|e| e[4] != 0).collect();
    if used.is_empty() {
        return Err("the disk's DOS partition table is empty".into());
    }
    if head[..440].iter().all(|b| *b == 0) {
        return Err(format!(
            "the disk has {} partition(s) but no boot code in its MBR: no boot loader was installed",
            used.len()
        ));
    }
    Ok(BootEvidence::Mbr {
        partitions: used.len(),
        active: used.iter().filter(|e| e[0] == 0x80).count(),
    })
}

fn gpt(head: &[u8]) -> Result<BootEvidence, String> {
    let header = head
        .get(512..1024)
        .ok_or("the disk has a protective MBR but no GPT header")?;
    if &header[..8] != b"EFI PART" {
        return Err("the disk has a protective MBR but no GPT header".into());
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap_or([0; 8]));
    let count = u32_at(80) as usize;
    let size = u32_at(84) as usize;
    if entries_lba != 2 || !(128..=512).contains(&size) || !size.is_multiple_of(8) {
        return Err("the disk's GPT header is not one kiln can read (entries not at LBA 2)".into());
    }
    let table = &head[1024..];
    let available = (table.len() / size).min(count);
    let mut used = 0;
    let mut esp = false;
    for e in table.chunks(size).take(available) {
        if e[..16].iter().any(|b| *b != 0) {
            used += 1;
            esp |= e[..16] == ESP_TYPE;
        }
    }
    if used == 0 {
        return Err("the disk's GPT holds no partition".into());
    }
    if !esp {
        return Err(format!(
            "the disk's GPT holds {used} partition(s) but no EFI System Partition: UEFI cannot boot it"
        ));
    }
    Ok(BootEvidence::Gpt { partitions: used })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(boot_code: bool, parts: &[(u8, u8)]) -> Vec<u8> {
        let mut d = vec![0u8; 512 * 34];
        if boot_code {
            d[0] = 0xfa;
        }
        for (i, (flag, ty)) in parts.iter().enumerate() {
            d[446 + i * 16] = *flag;
            d[446 + i * 16 + 4] = *ty;
        }
        d[510] = 0x55;
        d[511] = 0xaa;
        d
    }

    fn gpt_disk(types: &[[u8; 16]]) -> Vec<u8> {
        let mut d = mbr(false, &[(0, 0xee)]);
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            d[1024 + i * 128..1024 + i * 128 + 16].copy_from_slice(t);
        }
        d
    }

    #[test]
    fn a_bios_install_has_boot_code_and_an_active_partition() {
        assert_eq!(
            inspect(&mbr(true, &[(0x80, 0x83), (0, 0x82)])),
            Ok(BootEvidence::Mbr {
                partitions: 2,
                active: 1
            })
        );
    }

    #[test]
    fn a_blank_or_unbootable_disk_is_not_an_install() {
        assert!(
            inspect(&vec![0u8; 512 * 34])
                .unwrap_err()
                .contains("no partition table")
        );
        assert!(
            inspect(&mbr(false, &[(0x80, 0x83)]))
                .unwrap_err()
                .contains("no boot code")
        );
        assert!(inspect(&mbr(true, &[])).unwrap_err().contains("empty"));
        // The tiny fixture's marker in sector 0 is no partition table.
        let mut tiny = vec![0u8; 512 * 34];
        tiny[..10].copy_from_slice(b"INSTALLED ");
        assert!(inspect(&tiny).is_err());
    }

    #[test]
    fn a_uefi_install_has_a_gpt_with_an_efi_system_partition() {
        let linux = [
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ];
        assert_eq!(
            inspect(&gpt_disk(&[ESP_TYPE, linux])),
            Ok(BootEvidence::Gpt { partitions: 2 })
        );
        assert!(
            inspect(&gpt_disk(&[linux]))
                .unwrap_err()
                .contains("no EFI System Partition")
        );
    }

    #[test]
    fn a_short_or_lying_head_is_refused_not_trusted() {
        assert!(inspect(&[0u8; 100]).is_err());
        let mut d = gpt_disk(&[ESP_TYPE]);
        // Entries claimed somewhere kiln did not read.
        d[512 + 72..512 + 80].copy_from_slice(&9999u64.to_le_bytes());
        assert!(inspect(&d).is_err());
        let mut d = gpt_disk(&[ESP_TYPE]);
        d[512 + 84..512 + 88].copy_from_slice(&7u32.to_le_bytes());
        assert!(inspect(&d).is_err());
        // A huge entry count is bounded by what was read.
        let mut d = gpt_disk(&[ESP_TYPE]);
        d[512 + 80..512 + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(inspect(&d).is_ok());
    }
}
