//! Boot Loader Specification type 1 entries, as systemd-boot 252 reads and orders them.
//!
//! - [`EntryName`]: `STEM[+LEFT[-DONE]].conf`, the file name with its boot counter.
//! - [`Entry`]: the `key value` content, parsed and written in a canonical form.
//! - [`boot_order`] / [`boot_cmp`] / [`version_cmp`]: systemd-boot's menu order; with no
//!   `default` it boots the first entry, and an entry with no tries left sorts last, which
//!   is what makes a failed deployment fall back to the previous one.
//! - [`EntriesDir`]: `loader/entries` on the boot partition, changed power-cut safely
//!   (temp file not ending in `.conf`, fsync, rename without replacing, fsync directory).
//! - [`write_loader_conf`] / [`check_loader_conf`]: `loader.conf` without `default`.
//!
//! ```
//! use deploy::bls::{boot_order, Entry, EntryName};
//!
//! let old = EntryName::new("update-os-7").unwrap();
//! let new = EntryName::new("update-os-8").unwrap().with_tries(3).unwrap();
//! assert_eq!(new.file_name(), "update-os-8+3.conf");
//! let entry = |version: &str| Entry {
//!     version: Some(version.into()),
//!     sort_key: Some("update-os".into()),
//!     linux: "/update/os/k/vmlinuz".into(),
//!     ..Entry::default()
//! };
//! let mut entries = vec![(old.clone(), entry("7")), (new.clone(), entry("8"))];
//! boot_order(&mut entries);
//! assert_eq!(entries[0].0, new); // tried first
//!
//! // After three failed boots systemd-boot has renamed it to +0-3: it sorts last.
//! let bad = EntryName::parse("update-os-8+0-3.conf").unwrap();
//! let mut entries = vec![(bad, entry("8")), (old.clone(), entry("7"))];
//! boot_order(&mut entries);
//! assert_eq!(entries[0].0, old);
//! ```

mod dir;
mod entry;
mod loader;
mod name;
mod order;

pub use dir::EntriesDir;
pub use entry::{Entry, MAX_ENTRY_SIZE};
pub use loader::{check_loader_conf, write_loader_conf, LOADER_CONF};
pub use name::{EntryName, MAX_STEM_LEN, MAX_TRIES, SUFFIX};
pub use order::{boot_cmp, boot_order, version_cmp};
