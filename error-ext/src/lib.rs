//! `error_ext`: the error conventions every crate of `update` shares.
//!
//! Each library crate has one error enum with a variant for "a system call on this path
//! failed". [`FromIoError`] says how an error type builds that variant, and
//! [`io_result_ext!`] gives the crate its `.at_path(p)?` extension for it: one definition
//! for the workspace instead of a copy per crate. [`Chain`] prints an error with its causes.
//!
//! The convention: a message says what was being done; the cause is only the `source`,
//! never pasted into the message too. Whoever prints an error prints its [`Chain`].
//!
//! ```
//! use std::{io, path::PathBuf};
//!
//! #[derive(Debug, thiserror::Error)]
//! enum Error {
//!     #[error("{}", path.display())]
//!     Io { path: PathBuf, source: io::Error },
//! }
//!
//! impl error_ext::FromIoError for Error {
//!     fn from_io(path: PathBuf, source: io::Error) -> Self {
//!         Error::Io { path, source }
//!     }
//! }
//!
//! error_ext::io_result_ext!(pub(crate) Error);
//!
//! let e: Error = std::fs::read("/nonexistent/x").at_path("/nonexistent/x").unwrap_err();
//! assert_eq!(
//!     error_ext::Chain(&e).to_string(),
//!     "/nonexistent/x: No such file or directory (os error 2)"
//! );
//! ```

#![deny(missing_docs)]

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error type with a variant for an I/O error about a path.
pub trait FromIoError {
    /// The error for `source`, which a call on `path` failed with.
    fn from_io(path: PathBuf, source: io::Error) -> Self;
}

/// Defines, in the calling module, `IoResultExt`: `.at_path(p)` on any `Result` whose
/// error converts into an `io::Error` (std's, rustix's `Errno`), turning the error into
/// `$error` via its [`FromIoError`]. The trait's visibility comes first:
/// `io_result_ext!(pub Error)`, `io_result_ext!(pub(crate) Error)`.
///
/// A macro and not one generic method, because the error type must be fixed per crate:
/// with `fn at_path<E: FromIoError>`, `.at_path(p)?` cannot infer `E` in a crate whose
/// error has another `From` impl (a wrapped lower crate's error).
#[macro_export]
macro_rules! io_result_ext {
    ($vis:vis $error:ty) => {
        /// Attach the path an I/O error is about: `.at_path(p)?`.
        $vis trait IoResultExt<T> {
            /// Turn the I/O error into this crate's error naming `path`.
            fn at_path(
                self,
                path: impl ::core::convert::AsRef<::std::path::Path>,
            ) -> ::core::result::Result<T, $error>;
        }

        impl<T, E: ::core::convert::Into<::std::io::Error>> IoResultExt<T>
            for ::core::result::Result<T, E>
        {
            fn at_path(
                self,
                path: impl ::core::convert::AsRef<::std::path::Path>,
            ) -> ::core::result::Result<T, $error> {
                self.map_err(|e| {
                    <$error as $crate::FromIoError>::from_io(
                        path.as_ref().to_path_buf(),
                        e.into(),
                    )
                })
            }
        }
    };
}

/// Prints an error and each of its causes (`source`s), joined by `": "`: the one format
/// in which `update` shows an error to a person.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("inner failed")]
        Failed,
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("doing the thing")]
        Wrapped(#[source] Inner),
        #[error(transparent)]
        Transparent(Inner),
    }

    #[test]
    fn chain_joins_each_cause_once() {
        let e = Outer::Wrapped(Inner::Failed);
        assert_eq!(Chain(&e).to_string(), "doing the thing: inner failed");
    }

    #[test]
    fn transparent_wrapper_adds_no_text() {
        let e = Outer::Transparent(Inner::Failed);
        assert_eq!(Chain(&e).to_string(), "inner failed");
    }
}
