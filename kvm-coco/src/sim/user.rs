//! User-space memory as the simulated kernel sees it: the buffers a `KVM_*` ioctl names by
//! address, which the kernel reads with `copy_from_user` and writes with `copy_to_user`.
//!
//! [`UserMemory`] is that view. [`UserRegion`] and [`UserSpace`] borrow caller buffers at
//! chosen addresses (read-only, never copied); a simulated host with real, writable process
//! memory (the SEV model's [`SimSevHost`](crate::sim::sev::SimSevHost)) implements the
//! trait with writes too.

#![forbid(unsafe_code)]

use crate::error::Errno;

const EFAULT: Errno = Errno::from_raw(libc::EFAULT);

/// User-space memory as KVM's `copy_from_user` / `copy_to_user` see it.
pub trait UserMemory {
    /// Copies `buf.len()` bytes from user address `addr`.
    ///
    /// # Errors
    /// `EFAULT` if any byte is not mapped.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Copies `data` to user address `addr`. The default refuses every write (`EFAULT`), as
    /// for read-only borrowed buffers.
    ///
    /// # Errors
    /// `EFAULT` if any byte is not mapped or not writable.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let _ = (addr, data);
        Err(EFAULT)
    }
}

/// One mapped user buffer at a chosen user address (borrowed, never copied; read-only).
#[derive(Clone, Copy, Debug)]
pub struct UserRegion<'a> {
    /// The user address of `bytes[0]`.
    pub addr: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

impl UserMemory for UserRegion<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let off = addr.checked_sub(self.addr).ok_or(EFAULT)?;
        let off = usize::try_from(off).map_err(|_| EFAULT)?;
        let src = off
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(off..end))
            .ok_or(EFAULT)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A set of [`UserRegion`]s: a sparse, read-only user address space.
#[derive(Clone, Debug, Default)]
pub struct UserSpace<'a> {
    regions: Vec<UserRegion<'a>>,
}

impl<'a> UserSpace<'a> {
    /// An empty address space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `bytes` at `addr`.
    pub fn map(&mut self, addr: u64, bytes: &'a [u8]) -> &mut Self {
        self.regions.push(UserRegion { addr, bytes });
        self
    }
}

impl UserMemory for UserSpace<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.regions
            .iter()
            .find_map(|r| r.read(addr, buf).ok())
            .ok_or(EFAULT)
    }
}
