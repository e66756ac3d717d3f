//! Where the partitions go on the disk, and the partition types of the Discoverable
//! Partitions Specification: pure arithmetic, checked by unit tests.

use crate::error::{Error, Result};

/// Bytes per sector in the partition table and for `mkfs.vfat --offset`.
pub const SECTOR: u64 = 512;
/// Partitions start and end on 1 MiB boundaries; the first starts at 1 MiB (room for the
/// protective MBR and the primary GPT), and the last MiB holds the backup GPT.
pub const ALIGN: u64 = 1 << 20;
/// The smallest ESP accepted, and the default: room for several kernels and initramfs.
pub const MIN_ESP: u64 = 512 << 20;
/// GPT type of an EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// The partition layout of a disk of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The whole disk, in bytes.
    pub disk: u64,
    /// Byte offset of the ESP.
    pub esp_start: u64,
    /// Size of the ESP in bytes.
    pub esp_size: u64,
    /// Byte offset of the root partition.
    pub root_start: u64,
    /// Size of the root partition in bytes (a multiple of [`ALIGN`]).
    pub root_size: u64,
}

impl Layout {
    /// The layout of a `disk`-byte disk with an ESP of `esp_size` bytes; the root
    /// partition takes the rest. `None` when nothing is left for root.
    pub fn new(disk: u64, esp_size: u64) -> Result<Option<Layout>> {
        if esp_size < MIN_ESP {
            return Err(Error::invalid(
                format!("ESP size {esp_size} bytes"),
                format!("must be at least {} MiB", MIN_ESP >> 20),
            ));
        }
        if !esp_size.is_multiple_of(ALIGN) {
            return Err(Error::invalid(
                format!("ESP size {esp_size} bytes"),
                "must be a whole number of MiB",
            ));
        }
        let esp_start = ALIGN;
        let root_start = esp_start + esp_size;
        let end = (disk / ALIGN).saturating_sub(1) * ALIGN;
        if end <= root_start {
            return Ok(None);
        }
        Ok(Some(Layout {
            disk,
            esp_start,
            esp_size,
            root_start,
            root_size: end - root_start,
        }))
    }

    /// The `sfdisk` script of this layout.
    pub fn sfdisk_script(&self, root_type: &str) -> String {
        format!(
            "label: gpt\nunit: sectors\nsector-size: {SECTOR}\nfirst-lba: {}\n\n\
             start={}, size={}, type={ESP_TYPE}, name=\"esp\"\n\
             start={}, size={}, type={root_type}, name=\"root\"\n",
            ALIGN / SECTOR,
            self.esp_start / SECTOR,
            self.esp_size / SECTOR,
            self.root_start / SECTOR,
            self.root_size / SECTOR,
        )
    }
}

/// The root partition type and the systemd-boot file names of this machine's
/// architecture: (root type, `systemd-bootARCH.efi`, removable-media `BOOTARCH.EFI`).
pub fn arch() -> Result<(&'static str, &'static str, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "systemd-bootx64.efi",
            "BOOTX64.EFI",
        )),
        "aarch64" => Ok((
            "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
            "systemd-bootaa64.efi",
            "BOOTAA64.EFI",
        )),
        "riscv64" => Ok((
            "72EC70A6-CF74-40E6-BD49-4BDA08E8F224",
            "systemd-bootriscv64.efi",
            "BOOTRISCV64.EFI",
        )),
        a => Err(Error::invalid(
            format!("architecture {a}"),
            "install knows x86_64, aarch64 and riscv64",
        )),
    }
}

/// Parse a size: bytes, or a number with K, M, G or T (powers of 1024; `iB` allowed).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad_size(s)),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| bad_size(s))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| bad_size(s))
}

fn bad_size(s: &str) -> Error {
    Error::invalid(
        format!("size '{s}'"),
        "give bytes or a number with K, M, G or T (e.g. 4G, 512M)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_gib_leaves_root_after_the_esp_and_a_mib_for_the_backup_gpt() {
        let l = Layout::new(1 << 30, MIN_ESP).unwrap().unwrap();
        assert_eq!(l.esp_start, 1 << 20);
        assert_eq!(l.root_start, (1 << 20) + (512 << 20));
        assert_eq!(l.root_start + l.root_size, (1 << 30) - (1 << 20));
        assert_eq!(l.root_size, 510 << 20);
    }

    #[test]
    fn an_unaligned_disk_size_rounds_the_root_partition_down() {
        let l = Layout::new((1 << 30) + 12345, MIN_ESP).unwrap().unwrap();
        assert_eq!(l.root_size % ALIGN, 0);
        assert!(l.root_start + l.root_size + ALIGN <= l.disk);
    }

    #[test]
    fn no_room_for_root_is_none_and_a_small_esp_is_refused() {
        assert_eq!(Layout::new(513 << 20, MIN_ESP).unwrap(), None);
        assert_eq!(Layout::new(514 << 20, MIN_ESP).unwrap(), None);
        assert!(Layout::new(1 << 30, 100 << 20).is_err());
        assert!(Layout::new(1 << 30, MIN_ESP + 1).is_err());
    }

    #[test]
    fn the_sfdisk_script_names_sectors() {
        let l = Layout::new(1 << 30, MIN_ESP).unwrap().unwrap();
        let s = l.sfdisk_script("ROOT");
        assert!(s.contains("start=2048, size=1048576, type=C12A7328"), "{s}");
        assert!(s.contains("start=1050624, size=1044480, type=ROOT"), "{s}");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert!(parse_size("4X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
