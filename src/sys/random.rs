//! Randomness from the kernel (`getrandom`): authentication challenges,
//! authkeys, shared memory names, spawn nonces.

use crate::error::{Error, Result};

/// Fills `buf` with random bytes from the kernel (`getrandom`, the
/// blocking pool: never before the kernel's generator is seeded).
pub(crate) fn fill(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // which is borrowed mutably for the call.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::os("getrandom", e));
        }
        done += r as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_the_whole_buffer() {
        // 4 KiB of zeros from a working generator: about 2^-32768.
        let mut buf = vec![0u8; 4096];
        super::fill(&mut buf).unwrap();
        assert!(buf.iter().any(|&b| b != 0));
        super::fill(&mut []).unwrap();
    }
}
