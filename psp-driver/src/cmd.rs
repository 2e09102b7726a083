//! Firmware command ids (`enum sev_cmd`, `include/linux/psp-sev.h`).

use core::fmt;

macro_rules! sev_cmds {
    ( $( $(#[$meta:meta])* $variant:ident = $value:literal, $cname:literal; )* ) => {
        /// A PSP firmware command id, the value the driver writes to bits 26:16 of the
        /// mailbox command register (`enum sev_cmd` in the kernel's `include/linux/psp-sev.h`,
        /// Linux 7.3).
        ///
        /// These are *firmware* ids. They are not the `/dev/sev` ioctl command numbers
        /// (`SEV_PLATFORM_STATUS` = 1 there, while the firmware's PLATFORM_STATUS is 0x004).
        ///
        /// ```
        /// use psp_driver::SevCmd;
        ///
        /// assert_eq!(SevCmd::SnpLaunchUpdate.raw(), 0x0A1);
        /// assert_eq!(SevCmd::from_raw(0x00A), Some(SevCmd::DfFlush));
        /// assert_eq!(SevCmd::SnpLaunchUpdate.to_string(), "SNP_LAUNCH_UPDATE");
        /// assert_eq!(SevCmd::from_raw(0x0FF), None);
        /// ```
        #[doc(alias = "sev_cmd")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum SevCmd {
            $( $(#[$meta])* #[doc(alias = $cname)] $variant = $value, )*
        }

        impl SevCmd {
            /// Every command id, in ascending order.
            pub const ALL: &'static [SevCmd] = &[ $( SevCmd::$variant, )* ];

            /// Converts a raw firmware command id; `None` for an id the kernel does not define.
            pub const fn from_raw(raw: u32) -> Option<SevCmd> {
                match raw {
                    $( $value => Some(SevCmd::$variant), )*
                    _ => None,
                }
            }

            /// The kernel's name without the `SEV_CMD_` prefix, e.g. `"SNP_LAUNCH_UPDATE"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( SevCmd::$variant => $cname, )*
                }
            }
        }
    };
}

sev_cmds! {
    /// Initializes the platform (SEV API `INIT`); buffer [`SevDataInit`](crate::SevDataInit).
    Init = 0x001, "INIT";
    /// Shuts the platform down; no buffer.
    Shutdown = 0x002, "SHUTDOWN";
    /// Resets the platform's persistent state (PLATFORM_RESET in the SEV API); no buffer.
    FactoryReset = 0x003, "FACTORY_RESET";
    /// Reads the platform status; buffer `sev_user_data_status`.
    PlatformStatus = 0x004, "PLATFORM_STATUS";
    /// Generates a new Platform Endorsement Key; no buffer.
    PekGen = 0x005, "PEK_GEN";
    /// Produces a certificate signing request for the PEK; buffer [`SevDataPekCsr`](crate::SevDataPekCsr).
    PekCsr = 0x006, "PEK_CSR";
    /// Imports the signed PEK certificate and the OCA certificate.
    PekCertImport = 0x007, "PEK_CERT_IMPORT";
    /// Exports the PDH certificate and the platform certificate chain.
    PdhCertExport = 0x008, "PDH_CERT_EXPORT";
    /// Generates a new Platform Diffie-Hellman key; no buffer.
    PdhGen = 0x009, "PDH_GEN";
    /// Flushes the data-fabric write buffers and cleans dirty ASIDs; no buffer.
    DfFlush = 0x00A, "DF_FLUSH";
    /// Loads a new firmware image.
    DownloadFirmware = 0x00B, "DOWNLOAD_FIRMWARE";
    /// Reads the chip identifiers.
    GetId = 0x00C, "GET_ID";
    /// Initializes the platform with a non-volatile storage area supplied by the host.
    InitEx = 0x00D, "INIT_EX";
    /// Destroys a guest context (SEV, SEV-ES).
    Decommission = 0x020, "DECOMMISSION";
    /// Binds a guest handle to an ASID and installs its key.
    Activate = 0x021, "ACTIVATE";
    /// Unbinds a guest from its ASID; the ASID becomes dirty until the next DF_FLUSH.
    Deactivate = 0x022, "DEACTIVATE";
    /// Reads a guest's policy, ASID and state.
    GuestStatus = 0x023, "GUEST_STATUS";
    /// Creates a guest context and starts its launch.
    LaunchStart = 0x030, "LAUNCH_START";
    /// Encrypts guest memory in place and extends the launch digest.
    LaunchUpdateData = 0x031, "LAUNCH_UPDATE_DATA";
    /// Encrypts a VMSA page (SEV-ES) and extends the launch digest.
    LaunchUpdateVmsa = 0x032, "LAUNCH_UPDATE_VMSA";
    /// Returns the launch measurement.
    LaunchMeasure = 0x033, "LAUNCH_MEASURE";
    /// Injects a secret into the guest (LAUNCH_SECRET in the SEV API).
    LaunchUpdateSecret = 0x034, "LAUNCH_UPDATE_SECRET";
    /// Finishes the launch; the guest becomes runnable.
    LaunchFinish = 0x035, "LAUNCH_FINISH";
    /// Produces a legacy attestation report.
    AttestationReport = 0x036, "ATTESTATION_REPORT";
    /// Starts sending (migrating out) a guest.
    SendStart = 0x040, "SEND_START";
    /// Re-encrypts guest memory for transport.
    SendUpdateData = 0x041, "SEND_UPDATE_DATA";
    /// Re-encrypts a VMSA for transport.
    SendUpdateVmsa = 0x042, "SEND_UPDATE_VMSA";
    /// Finishes sending a guest.
    SendFinish = 0x043, "SEND_FINISH";
    /// Cancels sending a guest.
    SendCancel = 0x044, "SEND_CANCEL";
    /// Starts receiving (migrating in) a guest.
    ReceiveStart = 0x050, "RECEIVE_START";
    /// Imports transported guest memory.
    ReceiveUpdateData = 0x051, "RECEIVE_UPDATE_DATA";
    /// Imports a transported VMSA.
    ReceiveUpdateVmsa = 0x052, "RECEIVE_UPDATE_VMSA";
    /// Finishes receiving a guest.
    ReceiveFinish = 0x053, "RECEIVE_FINISH";
    /// Decrypts guest memory for debugging (policy permitting).
    DbgDecrypt = 0x060, "DBG_DECRYPT";
    /// Encrypts into guest memory for debugging (policy permitting).
    DbgEncrypt = 0x061, "DBG_ENCRYPT";
    /// Initializes SEV-SNP (the RMP must be set up); no buffer.
    SnpInit = 0x081, "SNP_INIT";
    /// Shuts SEV-SNP down; no buffer.
    SnpShutdown = 0x082, "SNP_SHUTDOWN";
    /// Writes the SNP platform status to a firmware-owned page.
    SnpPlatformStatus = 0x083, "SNP_PLATFORM_STATUS";
    /// The SNP variant of DF_FLUSH; no buffer.
    SnpDfFlush = 0x084, "SNP_DF_FLUSH";
    /// Initializes SEV-SNP with options (RMP init, ciphertext hiding, max SNP ASID).
    SnpInitEx = 0x085, "SNP_INIT_EX";
    /// Shuts SEV-SNP down with options.
    SnpShutdownEx = 0x086, "SNP_SHUTDOWN_EX";
    /// Destroys an SNP guest context; deactivates its ASID implicitly.
    SnpDecommission = 0x090, "SNP_DECOMMISSION";
    /// Binds an SNP guest context to an ASID.
    SnpActivate = 0x091, "SNP_ACTIVATE";
    /// Writes an SNP guest's status to a page.
    SnpGuestStatus = 0x092, "SNP_GUEST_STATUS";
    /// Turns a firmware-owned page into an SNP guest context.
    SnpGctxCreate = 0x093, "SNP_GCTX_CREATE";
    /// Forwards an encrypted guest message (report, key derivation, ...).
    SnpGuestRequest = 0x094, "SNP_GUEST_REQUEST";
    /// Activates an SNP guest on a subset of CCXs.
    SnpActivateEx = 0x095, "SNP_ACTIVATE_EX";
    /// Starts an SNP launch with the guest policy.
    SnpLaunchStart = 0x0A0, "SNP_LAUNCH_START";
    /// Adds a page to the SNP guest and extends the launch digest.
    SnpLaunchUpdate = 0x0A1, "SNP_LAUNCH_UPDATE";
    /// Finishes an SNP launch (ID block, ID auth, host data).
    SnpLaunchFinish = 0x0A2, "SNP_LAUNCH_FINISH";
    /// Decrypts an SNP guest page for debugging.
    SnpDbgDecrypt = 0x0B0, "SNP_DBG_DECRYPT";
    /// Encrypts into an SNP guest page for debugging.
    SnpDbgEncrypt = 0x0B1, "SNP_DBG_ENCRYPT";
    /// Queries or applies a CPU mitigation.
    SnpVerifyMitigation = 0x0B2, "SNP_VERIFY_MITIGATION";
    /// Swaps a guest page out.
    SnpPageSwapOut = 0x0C0, "SNP_PAGE_SWAP_OUT";
    /// Swaps a guest page in.
    SnpPageSwapIn = 0x0C1, "SNP_PAGE_SWAP_IN";
    /// Moves a guest page.
    SnpPageMove = 0x0C2, "SNP_PAGE_MOVE";
    /// Initializes a metadata page.
    SnpPageMdInit = 0x0C3, "SNP_PAGE_MD_INIT";
    /// Sets the state of a firmware page.
    SnpPageSetState = 0x0C6, "SNP_PAGE_SET_STATE";
    /// Returns a firmware or guest page to the hypervisor.
    SnpPageReclaim = 0x0C7, "SNP_PAGE_RECLAIM";
    /// Splits a 2 MiB RMP entry into 4 KiB entries.
    SnpPageUnsmash = 0x0C8, "SNP_PAGE_UNSMASH";
    /// Sets the reported TCB and the chip-id / chip-key masks.
    SnpConfig = 0x0C9, "SNP_CONFIG";
    /// Loads a firmware image (SNP variant).
    SnpDownloadFirmwareEx = 0x0CA, "SNP_DOWNLOAD_FIRMWARE_EX";
    /// Commits the current firmware, making rollback impossible.
    SnpCommit = 0x0CB, "SNP_COMMIT";
    /// Loads a wrapped VLEK hashstick.
    SnpVlekLoad = 0x0CD, "SNP_VLEK_LOAD";
    /// Reads the SNP feature-information leaf.
    SnpFeatureInfo = 0x0CE, "SNP_FEATURE_INFO";
    /// SEV-TIO: status.
    TioStatus = 0x0D0, "TIO_STATUS";
    /// SEV-TIO: initialize.
    TioInit = 0x0D1, "TIO_INIT";
    /// SEV-TIO: create a device context.
    TioDevCreate = 0x0D2, "TIO_DEV_CREATE";
    /// SEV-TIO: reclaim a device context.
    TioDevReclaim = 0x0D3, "TIO_DEV_RECLAIM";
    /// SEV-TIO: connect a device.
    TioDevConnect = 0x0D4, "TIO_DEV_CONNECT";
    /// SEV-TIO: disconnect a device.
    TioDevDisconnect = 0x0D5, "TIO_DEV_DISCONNECT";
}

/// One past the highest firmware command id (`SEV_CMD_MAX`).
pub const SEV_CMD_MAX: u32 = 0x0D6;

impl SevCmd {
    /// The raw firmware command id.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Whether this is an SNP command (id ≥ SNP_INIT). Legacy commands issued after SNP is
    /// initialized get special buffer handling in the kernel (firmware-owned command pages).
    pub const fn is_snp(self) -> bool {
        let raw = self.raw();
        raw >= SevCmd::SnpInit.raw() && raw < SevCmd::TioStatus.raw()
    }

    /// The length of the command buffer the kernel passes for this command
    /// (`sev_cmd_buffer_len()` in `drivers/crypto/ccp/sev-dev.c`).
    ///
    /// `Some(0)` means the command takes no buffer (both mailbox address registers are
    /// written as 0). `None` means the kernel does not know a buffer length for it (it
    /// never issues the command, or its buffer is defined elsewhere, as for SEV-TIO).
    ///
    /// ```
    /// use psp_driver::SevCmd;
    ///
    /// assert_eq!(SevCmd::SnpLaunchUpdate.buffer_len(), Some(32));
    /// assert_eq!(SevCmd::DfFlush.buffer_len(), Some(0));
    /// ```
    pub const fn buffer_len(self) -> Option<usize> {
        use SevCmd::*;
        Some(match self {
            Shutdown | FactoryReset | PekGen | PdhGen | DfFlush | SnpInit | SnpShutdown
            | SnpDfFlush => 0,
            Init => 20,
            InitEx => 36,
            PlatformStatus => 12,
            PekCsr => 12,
            PekCertImport => 28,
            PdhCertExport => 28,
            DownloadFirmware | GetId => 12,
            Decommission | Deactivate | LaunchFinish | SendFinish | SendCancel | ReceiveFinish => 4,
            Activate => 8,
            GuestStatus => 13,
            LaunchStart => 36,
            LaunchUpdateData | LaunchUpdateVmsa | LaunchMeasure => 20,
            LaunchUpdateSecret => 52,
            AttestationReport => 36,
            SendStart => 68,
            SendUpdateData => 52,
            SendUpdateVmsa => 48,
            ReceiveStart => 36,
            ReceiveUpdateData | ReceiveUpdateVmsa => 52,
            DbgDecrypt | DbgEncrypt => 28,
            SnpPlatformStatus | SnpGctxCreate | SnpDecommission => 8,
            SnpInitEx => 64,
            SnpShutdownEx => 8,
            SnpActivate => 12,
            SnpGuestStatus => 16,
            SnpGuestRequest => 24,
            SnpLaunchStart => 48,
            SnpLaunchUpdate => 32,
            SnpLaunchFinish => 64,
            SnpDbgDecrypt | SnpDbgEncrypt => 24,
            SnpVerifyMitigation => 64,
            SnpPageReclaim | SnpPageUnsmash => 8,
            SnpConfig => 64,
            SnpDownloadFirmwareEx => return None,
            SnpCommit => 4,
            SnpVlekLoad => 16,
            SnpFeatureInfo => 16,
            SnpActivateEx | SnpPageSwapOut | SnpPageSwapIn | SnpPageMove | SnpPageMdInit
            | SnpPageSetState | TioStatus | TioInit | TioDevCreate | TioDevReclaim
            | TioDevConnect | TioDevDisconnect => return None,
        })
    }
}

impl fmt::Display for SevCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<SevCmd> for u32 {
    fn from(cmd: SevCmd) -> u32 {
        cmd.raw()
    }
}

impl TryFrom<u32> for SevCmd {
    type Error = UnknownSevCmd;

    fn try_from(raw: u32) -> Result<SevCmd, UnknownSevCmd> {
        SevCmd::from_raw(raw).ok_or(UnknownSevCmd(raw))
    }
}

/// A raw firmware command id that `enum sev_cmd` does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown SEV firmware command id {0:#05x}")]
pub struct UnknownSevCmd(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id of linux-uapi facts §8.1 (kernel `enum sev_cmd`, 7.3), transcribed by hand.
    const FACTS: &[(u32, &str)] = &[
        (0x001, "INIT"),
        (0x002, "SHUTDOWN"),
        (0x003, "FACTORY_RESET"),
        (0x004, "PLATFORM_STATUS"),
        (0x005, "PEK_GEN"),
        (0x006, "PEK_CSR"),
        (0x007, "PEK_CERT_IMPORT"),
        (0x008, "PDH_CERT_EXPORT"),
        (0x009, "PDH_GEN"),
        (0x00A, "DF_FLUSH"),
        (0x00B, "DOWNLOAD_FIRMWARE"),
        (0x00C, "GET_ID"),
        (0x00D, "INIT_EX"),
        (0x020, "DECOMMISSION"),
        (0x021, "ACTIVATE"),
        (0x022, "DEACTIVATE"),
        (0x023, "GUEST_STATUS"),
        (0x030, "LAUNCH_START"),
        (0x031, "LAUNCH_UPDATE_DATA"),
        (0x032, "LAUNCH_UPDATE_VMSA"),
        (0x033, "LAUNCH_MEASURE"),
        (0x034, "LAUNCH_UPDATE_SECRET"),
        (0x035, "LAUNCH_FINISH"),
        (0x036, "ATTESTATION_REPORT"),
        (0x040, "SEND_START"),
        (0x041, "SEND_UPDATE_DATA"),
        (0x042, "SEND_UPDATE_VMSA"),
        (0x043, "SEND_FINISH"),
        (0x044, "SEND_CANCEL"),
        (0x050, "RECEIVE_START"),
        (0x051, "RECEIVE_UPDATE_DATA"),
        (0x052, "RECEIVE_UPDATE_VMSA"),
        (0x053, "RECEIVE_FINISH"),
        (0x060, "DBG_DECRYPT"),
        (0x061, "DBG_ENCRYPT"),
        (0x081, "SNP_INIT"),
        (0x082, "SNP_SHUTDOWN"),
        (0x083, "SNP_PLATFORM_STATUS"),
        (0x084, "SNP_DF_FLUSH"),
        (0x085, "SNP_INIT_EX"),
        (0x086, "SNP_SHUTDOWN_EX"),
        (0x090, "SNP_DECOMMISSION"),
        (0x091, "SNP_ACTIVATE"),
        (0x092, "SNP_GUEST_STATUS"),
        (0x093, "SNP_GCTX_CREATE"),
        (0x094, "SNP_GUEST_REQUEST"),
        (0x095, "SNP_ACTIVATE_EX"),
        (0x0A0, "SNP_LAUNCH_START"),
        (0x0A1, "SNP_LAUNCH_UPDATE"),
        (0x0A2, "SNP_LAUNCH_FINISH"),
        (0x0B0, "SNP_DBG_DECRYPT"),
        (0x0B1, "SNP_DBG_ENCRYPT"),
        (0x0B2, "SNP_VERIFY_MITIGATION"),
        (0x0C0, "SNP_PAGE_SWAP_OUT"),
        (0x0C1, "SNP_PAGE_SWAP_IN"),
        (0x0C2, "SNP_PAGE_MOVE"),
        (0x0C3, "SNP_PAGE_MD_INIT"),
        (0x0C6, "SNP_PAGE_SET_STATE"),
        (0x0C7, "SNP_PAGE_RECLAIM"),
        (0x0C8, "SNP_PAGE_UNSMASH"),
        (0x0C9, "SNP_CONFIG"),
        (0x0CA, "SNP_DOWNLOAD_FIRMWARE_EX"),
        (0x0CB, "SNP_COMMIT"),
        (0x0CD, "SNP_VLEK_LOAD"),
        (0x0CE, "SNP_FEATURE_INFO"),
        (0x0D0, "TIO_STATUS"),
        (0x0D1, "TIO_INIT"),
        (0x0D2, "TIO_DEV_CREATE"),
        (0x0D3, "TIO_DEV_RECLAIM"),
        (0x0D4, "TIO_DEV_CONNECT"),
        (0x0D5, "TIO_DEV_DISCONNECT"),
    ];

    #[test]
    fn ids_and_names_match_the_facts() {
        assert_eq!(SevCmd::ALL.len(), FACTS.len());
        for &(raw, name) in FACTS {
            let cmd = SevCmd::from_raw(raw).unwrap_or_else(|| panic!("{raw:#x} missing"));
            assert_eq!(cmd.raw(), raw);
            assert_eq!(cmd.name(), name);
            assert_eq!(cmd.to_string(), name);
            assert_eq!(SevCmd::try_from(raw), Ok(cmd));
        }
        for raw in 0..0x200u32 {
            if !FACTS.iter().any(|&(r, _)| r == raw) {
                assert_eq!(SevCmd::from_raw(raw), None, "{raw:#x}");
                assert_eq!(SevCmd::try_from(raw), Err(UnknownSevCmd(raw)));
            }
        }
        assert!(SevCmd::ALL.iter().all(|c| c.raw() < SEV_CMD_MAX));
        assert!(SevCmd::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn snp_classification() {
        assert!(!SevCmd::DbgEncrypt.is_snp());
        assert!(SevCmd::SnpInit.is_snp());
        assert!(SevCmd::SnpFeatureInfo.is_snp());
        assert!(!SevCmd::TioInit.is_snp());
    }
}
