//! `frontend`: the `update` front end. One config file (`config`) with its trusted keys
//! (`keys`), automatic updates on a
//! schedule (`schedule`, `run`), an audit log (`audit`), and the backends that do the work
//! (`backend`: the built-in tree store, or an `update-backend-NAME` executable).

pub mod audit;
pub mod backend;
pub mod config;
pub mod error;
pub mod keys;
pub mod run;
pub mod schedule;

pub use error::{Error, Result};
