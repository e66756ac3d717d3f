//! `deploy`: turns a pulled commit into the system a device boots next.
//!
//! Not built yet: the sysroot layout, hardlink deployments, the `/etc` 3-way merge,
//! Boot Loader Specification entries with boot counting, rollback and `prepare-root`
//! arrive with the deploy-engine issue. This crate exists so the workspace has its final
//! shape; it exports nothing, and no command claims to deploy.
