//! `deploy`: turns a pulled commit into the system a device boots next.
//!
//! The sysroot layout is in `docs/deploy.md`. A deployment is a hardlink checkout of a
//! commit with a merged `/etc`; it becomes bootable through a Boot Loader Specification
//! entry whose file name carries a boot counter, so the firmware falls back by itself when
//! a new deployment never comes up.

pub mod bls;
pub mod error;
pub mod etc_merge;

pub use error::{Error, Result};
pub mod actions;
pub mod bootfiles;
pub mod cmdline;
pub mod deploy;
pub mod deployment;
pub mod finalize;
pub mod prepare_root;
pub mod shape;
pub mod space;
pub mod state;
pub mod sysroot;
