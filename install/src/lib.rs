//! `install`: put a commit onto a new device, as `update install to-disk` and
//! `update install to-filesystem` do.
//!
//! [`disk::to_disk`] writes a GPT disk a UEFI machine boots (Discoverable Partitions
//! Specification: an ESP with systemd-boot, an ext4 root) into an image file, without
//! root or loop devices, or onto a whole-disk block device. [`disk::to_filesystem`] does
//! the same into filesystems the builder made and mounted. Both stage the sysroot with
//! the deploy engine's own code ([`stage`]) and set the device up to update itself.
//!
//! ```no_run
//! use install::disk::{to_disk, DiskOptions};
//! use install::stage::{Options, Source};
//!
//! let opts = Options {
//!     source: Source::Repo { path: "/srv/build/repo".into(), rev: "os/stable".into() },
//!     keys: vec![("release".into(), "/srv/build/release.key.pub".into())],
//!     device_source: Some("https://updates.example.com/repo#os/stable".into()),
//!     ..Options::default()
//! };
//! let disk = DiskOptions { size: Some(4 << 30), ..DiskOptions::default() };
//! let report = to_disk("disk.img".as_ref(), &opts, &disk, &mut |line| println!("{line}"))?;
//! # let _ = report;
//! # Ok::<(), install::Error>(())
//! ```
//!
//! The steps and their crash safety are in `docs/device.md`, section 4.

pub mod copy;
pub mod disk;
pub mod error;
pub mod layout;
pub mod stage;
pub mod target;
pub mod tools;

pub use error::{Error, Result};
