//! The error of [`Connection::into_async`](crate::Connection::into_async):
//! registering a descriptor with the tokio runtime. It converts into
//! [`crate::Error`], so `?` works in a function returning [`crate::Result`].

use std::io;

use crate::error::Error;

/// Why a descriptor was not registered with the tokio runtime (the
/// connection is closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntoAsyncError {
    /// The call was made outside a tokio runtime: there is none to
    /// register with.
    #[error("an async call of multiproc needs a tokio runtime")]
    NoRuntime,
    /// The system call failed: `dup` of the descriptor (`EMFILE`), or the
    /// runtime's `epoll_ctl` (`"register"`).
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl IntoAsyncError {
    /// The errno of an [`IntoAsyncError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IntoAsyncError::Os { source, .. } => source.raw_os_error(),
            IntoAsyncError::NoRuntime => None,
        }
    }

    /// The failure as a system call's: a missing runtime as the failed
    /// `"register"` it was before it had a variant of its own (the form
    /// other calls' `Os` variants and [`Error::Os`] carry).
    pub(crate) fn into_os(self) -> (&'static str, io::Error) {
        match self {
            IntoAsyncError::NoRuntime => ("register", io::Error::other(self.to_string())),
            IntoAsyncError::Os { call, source } => (call, source),
        }
    }
}

impl From<IntoAsyncError> for Error {
    /// [`Error::Os`] (a missing runtime as a failed `"register"`).
    fn from(e: IntoAsyncError) -> Error {
        let (call, source) = e.into_os();
        Error::Os { call, source }
    }
}
