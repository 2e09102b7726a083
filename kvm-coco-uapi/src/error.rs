//! Typed errors of the local (pre-ioctl) checks this crate offers.

/// Why a guest policy would be refused.
///
/// Returned by [`crate::SevPolicy::validate`], [`crate::SnpPolicy::validate`] and the
/// firmware-version checks. Each variant says what to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PolicyError {
    /// A bit the specification reserves (must be zero) is set.
    #[error("reserved policy bits set: {bits:#x}")]
    ReservedBits {
        /// The offending bits.
        bits: u64,
    },
    /// A must-be-one bit is clear (SNP bit 17, `RSVD_MBO`); KVM answers `-EINVAL`.
    #[error("policy bit {bit} must be one")]
    MustBeOne {
        /// The bit number.
        bit: u32,
    },
    /// Bits outside the host's supported mask (for SNP, the `KVM_X86_SNP_POLICY_BITS`
    /// device attribute); KVM answers `-EINVAL`.
    #[error("policy bits not supported by this host: {bits:#x}")]
    Unsupported {
        /// The unsupported bits.
        bits: u64,
    },
    /// The policy demands a newer firmware API than the platform runs; the firmware would
    /// answer `POLICY_FAILURE`.
    #[error("policy requires firmware API {major}.{minor}, platform has {have_major}.{have_minor}")]
    ApiVersionTooHigh {
        /// Required major version.
        major: u8,
        /// Required minor version.
        minor: u8,
        /// Platform major version.
        have_major: u8,
        /// Platform minor version.
        have_minor: u8,
    },
}
