//! The software PSP firmware: a model of AMD SEV/SEV-ES/SEV-SNP firmware 1.55
//! that executes mailbox commands against simulated system memory.
//!
//! [`SimFirmware`] implements [`Transport`]: a [`Psp`](crate::Psp) over it
//! behaves like one over the real mailbox. Commands take the kernel's packed
//! `sev_data_*` buffers; addresses inside them are physical addresses into a
//! shared [`PhysMem`]. The firmware:
//!
//! - runs the platform state machine (UNINIT/INIT/WORKING, SNP UNINIT/INIT),
//!   the legacy guest state machine (UNINIT … RUNNING) and the SNP guest states
//!   (INIT/LAUNCH/RUNNING), with each command's checks in the firmware's order
//!   and the firmware's status codes;
//! - keeps the ASID lifecycle (clean, allocated, in use, dirty; DF_FLUSH and
//!   WBINVD) and a reverse map table (RMP) of page states;
//! - computes launch digests (SEV SHA-256 stream, SNP PAGE_INFO chain), the
//!   LAUNCH_MEASURE HMAC, the session key unwrap, LAUNCH_SECRET, ID block
//!   checks and signed attestation reports, with real cryptography;
//! - encrypts launched pages in place under a per-guest key. This **models**
//!   memory encryption (AES-128-CTR keyed by the guest's VEK, counter = PA/16),
//!   it does not reproduce the memory controller's AES-XTS with its physical
//!   address tweak: the host sees ciphertext, DBG_DECRYPT recovers plaintext;
//! - is deterministic: every key, nonce and report ID comes from a ChaCha20 RNG
//!   seeded from [`SimConfig::seed`].
//!
//! Host-side actions that are CPU instructions rather than firmware commands
//! are methods: [`SimFirmware::wbinvd`] (WBINVD on all cores), and the RMPUPDATE
//! model [`SimFirmware::rmp_make_firmware`], [`SimFirmware::rmp_make_private`],
//! [`SimFirmware::rmp_make_shared`].
//!
//! ```
//! use psp_driver::sim::{SimConfig, SimFirmware, mem::PhysMem};
//! use psp_driver::{SevCmd, SevRetCode, Transport};
//! use std::sync::Arc;
//!
//! let fw = SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new()));
//! let mut init = [0u8; 20];
//! assert!(fw.submit(SevCmd::Init, &mut init).is_success());
//! let mut status = [0u8; 12];
//! assert!(fw.submit(SevCmd::PlatformStatus, &mut status).is_success());
//! assert_eq!(status[2], 1); // INIT
//! // A second INIT is refused.
//! assert_eq!(fw.submit(SevCmd::Init, &mut init).status, SevRetCode::InvalidPlatformState);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::Zeroizing;

use crate::owner::cert::SevCert;
use crate::report::TcbVersion;
use crate::{Completion, SevCmd, SevRetCode, Transport};

pub mod mem;
pub mod platform;

mod identity;
mod legacy;
mod snp;

pub use legacy::SevGuestState;
pub use mem::PhysMem;
pub use snp::{ContentsHint, CpuidMask, CpuidPolicy, RmpEntry, RmpError, RmpState, SnpGuestState};

use identity::Identity;

/// Status type of the firmware's command handlers.
type Fw<T = ()> = Result<T, SevRetCode>;

/// Configuration of the simulated platform.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random value the firmware draws (keys, nonces, IDs).
    pub seed: [u8; 32],
    /// Firmware API major version (reported and checked against policies).
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build number.
    pub build: u8,
    /// Highest ASID (CPUID 0x8000001F ECX).
    pub max_asid: u32,
    /// First ASID for plain SEV guests (CPUID 0x8000001F EDX); ASIDs
    /// `1..min_sev_asid` are for SEV-ES and SNP guests.
    pub min_sev_asid: u32,
    /// Whether SMT is enabled on the host (SNP policy bit 16 must then be set).
    pub smt_enabled: bool,
    /// The current (= committed = reported) TCB version.
    pub tcb: TcbVersion,
    /// CPUID family/model/stepping signature, written into the secrets page.
    pub fms: u32,
    /// What the CPUID page of an SNP launch may contain.
    pub cpuid_policy: CpuidPolicy,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: [0x5e; 32],
            api_major: 1,
            api_minor: 55,
            build: 25,
            max_asid: 16,
            min_sev_asid: 10,
            smt_enabled: true,
            tcb: TcbVersion::new(9, 0, 23, 0xd5),
            fms: 0x00A1_0F11,
            cpuid_policy: CpuidPolicy::default(),
        }
    }
}

/// Legacy SEV platform states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PlatformState {
    /// Not initialised.
    Uninit = 0,
    /// Initialised, no guests.
    Init = 1,
    /// At least one guest launched.
    Working = 2,
}

/// Who holds an ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Sev(u32),
    Snp(u64),
}

/// The state of one ASID (a single CCX is modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsidState {
    /// Free and flushed.
    Clean,
    /// Bound to a guest whose activation is pending (not yet running).
    Allocated,
    /// Bound to a running guest.
    InUse,
    /// Released by DEACTIVATE/DECOMMISSION; needs WBINVD then DF_FLUSH.
    Dirty,
}

pub(crate) struct State {
    cfg: SimConfig,
    rng: ChaCha20Rng,
    id: Identity,
    sev_state: PlatformState,
    es_init: bool,
    owner_external: bool,
    sev_guests: BTreeMap<u32, legacy::SevGuest>,
    snp_init: bool,
    snp_guests: HashMap<u64, snp::SnpGuest>,
    rmp: HashMap<u64, RmpEntry>,
    asids: Vec<(AsidState, Option<Owner>)>,
    wbinvd_done: bool,
    mem: Arc<PhysMem>,
    /// Content digests computed ahead of SNP_LAUNCH_UPDATE, by host-physical address.
    contents_hints: HashMap<u64, snp::ContentsHint>,
}

/// The software PSP firmware; see the [module docs](self).
pub struct SimFirmware {
    state: Mutex<State>,
    mem: Arc<PhysMem>,
}

impl core::fmt::Debug for SimFirmware {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimFirmware").finish_non_exhaustive()
    }
}

/// The platform certificates, as a host or guest owner fetches them.
#[derive(Clone, Copy, Debug)]
pub struct PlatformCerts {
    /// Platform Diffie-Hellman key certificate (signed by the PEK).
    pub pdh: SevCert,
    /// Platform endorsement key certificate (signed by the OCA and the CEK).
    pub pek: SevCert,
    /// Owner certificate authority certificate.
    pub oca: SevCert,
    /// Chip endorsement key certificate.
    pub cek: SevCert,
    /// SNP endorsement chain.
    pub snp: crate::owner::snp::SnpCertChain,
}

// Little helpers over command buffers: reads past the end give 0, writes past
// the end are dropped (a short buffer never panics).
pub(crate) fn rd32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
pub(crate) fn rd64(b: &[u8], off: usize) -> u64 {
    (rd32(b, off) as u64) | (rd32(b, off + 4) as u64) << 32
}
pub(crate) fn wr(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off + v.len()) {
        d.copy_from_slice(v);
    }
}
pub(crate) fn wr32(b: &mut [u8], off: usize, v: u32) {
    wr(b, off, &v.to_le_bytes());
}

/// Models guest memory encryption: AES-128-CTR under `key` with the counter
/// block set to `pa / 16` (big-endian), so each 16-byte block is bound to its
/// physical address. `pa` must be 16-byte aligned.
pub(crate) fn mem_crypt(key: &[u8; 16], pa: u64, data: &mut [u8]) {
    let iv = ((pa >> 4) as u128).to_be_bytes();
    crate::owner::crypto::aes128_ctr(key, &iv, data);
}

impl SimFirmware {
    /// A firmware in the power-on state (platform UNINIT, SNP UNINIT, all
    /// ASIDs clean, WBINVD done) over `mem`.
    pub fn new(cfg: SimConfig, mem: Arc<PhysMem>) -> Self {
        let mut rng = ChaCha20Rng::from_seed(cfg.seed);
        let api = (cfg.api_major, cfg.api_minor);
        // Key generation with a valid RNG only fails if signing fails, which
        // RFC 6979 signing with a valid key cannot do.
        let id =
            Identity::generate(&mut rng, api).unwrap_or_else(|_| unreachable!("key generation"));
        let asids = vec![(AsidState::Clean, None); cfg.max_asid as usize + 1];
        let state = State {
            cfg,
            rng,
            id,
            sev_state: PlatformState::Uninit,
            es_init: false,
            owner_external: false,
            sev_guests: BTreeMap::new(),
            snp_init: false,
            snp_guests: HashMap::new(),
            rmp: HashMap::new(),
            asids,
            wbinvd_done: true,
            mem: mem.clone(),
            contents_hints: HashMap::new(),
        };
        Self {
            state: Mutex::new(state),
            mem,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The simulated system memory.
    pub fn mem(&self) -> &Arc<PhysMem> {
        &self.mem
    }

    /// Executes one firmware command with the raw command id `cmd` on `buf`
    /// (updated in place, also on failure) and returns the firmware status.
    /// Unknown or unimplemented commands give INVALID_COMMAND.
    pub fn execute(&self, cmd: u32, buf: &mut [u8]) -> SevRetCode {
        let mut st = self.lock();
        let r = match SevCmd::from_raw(cmd) {
            Some(c) => st.dispatch(c, buf),
            None => Err(SevRetCode::InvalidCommand),
        };
        match r {
            Ok(()) => SevRetCode::Success,
            Err(e) => e,
        }
    }

    /// WBINVD on every core: sets the WBINVD-done indication DF_FLUSH needs.
    pub fn wbinvd(&self) {
        self.lock().wbinvd_done = true;
    }

    /// The state of `asid`, or `None` outside `1..=max_asid`.
    pub fn asid_state(&self, asid: u32) -> Option<AsidState> {
        let st = self.lock();
        if asid == 0 {
            return None;
        }
        st.asids.get(asid as usize).map(|a| a.0)
    }

    /// The platform's current certificates (what PDH_CERT_EXPORT returns, and the
    /// SNP chain a host would fetch from AMD's key distribution service).
    pub fn certs(&self) -> PlatformCerts {
        let st = self.lock();
        PlatformCerts {
            pdh: st.id.pdh_cert,
            pek: st.id.pek_cert,
            oca: st.id.oca_cert,
            cek: st.id.cek_cert,
            snp: crate::owner::snp::SnpCertChain {
                ark: st.id.ark_cert,
                ask: st.id.ask_cert,
                vcek: st.id.vcek_cert,
            },
        }
    }

    /// The platform configuration.
    pub fn config(&self) -> SimConfig {
        self.lock().cfg.clone()
    }
}

impl Transport for SimFirmware {
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
        match self.execute(cmd.raw(), buf) {
            SevRetCode::Success => Completion::SUCCESS,
            // The kernel turns every non-zero firmware status into -EIO.
            s => Completion {
                status: s,
                errno: Some(nix::errno::Errno::EIO),
            },
        }
    }
}

impl State {
    fn draw<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill_bytes(&mut b);
        b
    }

    fn draw_key(&mut self) -> Arc<Zeroizing<[u8; 16]>> {
        let mut k = Zeroizing::new([0u8; 16]);
        self.rng.fill_bytes(&mut k[..]);
        Arc::new(k)
    }

    fn read(&self, pa: u64, len: usize) -> Fw<Vec<u8>> {
        self.mem
            .read_vec(pa, len)
            .map_err(|_| SevRetCode::InvalidAddress)
    }

    fn write(&self, pa: u64, data: &[u8]) -> Fw {
        self.mem
            .write(pa, data)
            .map_err(|_| SevRetCode::InvalidAddress)
    }

    /// What a guest reads at `pa` (within one 4 KiB page) through its C-bit mapping: the
    /// page's bytes decrypted with the guest's `vek` (only the 16-byte blocks that cover
    /// `buf`). INVALID_LEN if the read crosses the page.
    fn read_decrypted(&self, vek: &[u8; 16], pa: u64, buf: &mut [u8]) -> Fw {
        let page = pa & !(mem::PAGE_SIZE as u64 - 1);
        let off = (pa - page) as usize;
        let mut data = Zeroizing::new(self.read(page, mem::PAGE_SIZE)?);
        let end = off.checked_add(buf.len()).ok_or(SevRetCode::InvalidLen)?;
        let start = off & !15;
        let blocks = data
            .get_mut(start..end.div_ceil(16) * 16)
            .ok_or(SevRetCode::InvalidLen)?;
        mem_crypt(vek, page + start as u64, blocks);
        let src = blocks
            .get(off - start..end - start)
            .ok_or(SevRetCode::InvalidLen)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn dispatch(&mut self, cmd: SevCmd, b: &mut [u8]) -> Fw {
        use SevCmd as C;
        match cmd {
            C::Init => self.init(b, false),
            C::InitEx => self.init(b, true),
            C::Shutdown => self.shutdown(),
            C::PlatformStatus => self.platform_status(b),
            C::PekGen => self.pek_gen(),
            C::PekCsr => self.pek_csr(b),
            C::PekCertImport => self.pek_cert_import(b),
            C::PdhGen => self.pdh_gen(),
            C::PdhCertExport => self.pdh_cert_export(b),
            C::GetId => self.get_id(b),
            C::DfFlush => {
                if self.sev_state == PlatformState::Uninit {
                    return Err(SevRetCode::InvalidPlatformState);
                }
                self.df_flush()
            }
            C::SnpDfFlush => {
                if !self.snp_init {
                    return Err(SevRetCode::InvalidPlatformState);
                }
                self.df_flush()
            }
            C::LaunchStart => self.launch_start(b),
            C::LaunchUpdateData => self.launch_update(b, false),
            C::LaunchUpdateVmsa => self.launch_update(b, true),
            C::LaunchMeasure => self.launch_measure(b),
            C::LaunchUpdateSecret => self.launch_secret(b),
            C::LaunchFinish => self.launch_finish(b),
            C::AttestationReport => self.attestation(b),
            C::Activate => self.activate(b),
            C::Deactivate => self.deactivate(b),
            C::Decommission => self.decommission(b),
            C::GuestStatus => self.guest_status(b),
            C::DbgDecrypt => self.dbg(b, false),
            C::DbgEncrypt => self.dbg(b, true),
            C::SendStart => self.send_start(b),
            C::SendUpdateData => self.send_update(b, false),
            C::SendUpdateVmsa => self.send_update(b, true),
            C::SendFinish => self.send_end(b, true),
            C::SendCancel => self.send_end(b, false),
            C::ReceiveStart => self.receive_start(b),
            C::ReceiveUpdateData => self.receive_update(b, false),
            C::ReceiveUpdateVmsa => self.receive_update(b, true),
            C::ReceiveFinish => self.receive_finish(b),
            C::SnpInit => self.snp_init_cmd(None),
            C::SnpInitEx => self.snp_init_cmd(Some(b)),
            C::SnpShutdown => self.snp_shutdown(),
            C::SnpShutdownEx => self.snp_shutdown(),
            C::SnpPlatformStatus => self.snp_platform_status(b),
            C::SnpGctxCreate => self.snp_gctx_create(b),
            C::SnpLaunchStart => self.snp_launch_start(b),
            C::SnpActivate => self.snp_activate(b),
            C::SnpLaunchUpdate => self.snp_launch_update(b),
            C::SnpLaunchFinish => self.snp_launch_finish(b),
            C::SnpDecommission => self.snp_decommission(b),
            C::SnpGuestStatus => self.snp_guest_status(b),
            C::SnpDbgDecrypt => self.snp_dbg(b, false),
            C::SnpDbgEncrypt => self.snp_dbg(b, true),
            C::SnpPageReclaim => self.snp_page_reclaim(b),
            C::SnpGuestRequest => self.snp_guest_request(b),
            _ => Err(SevRetCode::InvalidCommand),
        }
    }

    // ---- Platform commands -------------------------------------------------

    fn init(&mut self, b: &[u8], ex: bool) -> Fw {
        if self.sev_state != PlatformState::Uninit {
            return Err(SevRetCode::InvalidPlatformState);
        }
        let flags = if ex {
            if rd32(b, 0) != 36 {
                return Err(SevRetCode::InvalidLen);
            }
            rd32(b, 4)
        } else {
            rd32(b, 0)
        };
        self.es_init = flags & 1 != 0;
        self.sev_state = PlatformState::Init;
        Ok(())
    }

    fn shutdown(&mut self) -> Fw {
        let handles: Vec<u32> = self.sev_guests.keys().copied().collect();
        for h in handles {
            self.release_asid(Owner::Sev(h));
        }
        self.sev_guests.clear();
        self.sev_state = PlatformState::Uninit;
        self.es_init = false;
        Ok(())
    }

    fn platform_status(&mut self, b: &mut [u8]) -> Fw {
        let up = self.sev_state != PlatformState::Uninit;
        b.fill(0);
        wr(
            b,
            0,
            &[self.cfg.api_major, self.cfg.api_minor, self.sev_state as u8],
        );
        wr(b, 3, &[u8::from(up && self.owner_external)]);
        wr(b, 4, &[u8::from(up && self.es_init)]);
        wr(b, 7, &[self.cfg.build]);
        wr32(b, 8, if up { self.sev_guests.len() as u32 } else { 0 });
        Ok(())
    }

    fn pek_gen(&mut self) -> Fw {
        if self.sev_state != PlatformState::Init {
            return Err(SevRetCode::InvalidPlatformState);
        }
        let mut rng = self.rng.clone();
        self.id
            .pek_gen(&mut rng)
            .map_err(|_| SevRetCode::HwsevRetPlatform)?;
        self.rng = rng;
        self.owner_external = false;
        Ok(())
    }

    fn pdh_gen(&mut self) -> Fw {
        if self.sev_state == PlatformState::Uninit {
            return Err(SevRetCode::InvalidPlatformState);
        }
        let mut rng = self.rng.clone();
        self.id
            .pdh_gen(&mut rng)
            .map_err(|_| SevRetCode::HwsevRetPlatform)?;
        self.rng = rng;
        Ok(())
    }

    fn pek_csr(&mut self, b: &mut [u8]) -> Fw {
        use zerocopy::IntoBytes;
        if self.sev_state != PlatformState::Init {
            return Err(SevRetCode::InvalidPlatformState);
        }
        let (addr, len) = (rd64(b, 0), rd32(b, 8) as usize);
        wr32(b, 8, crate::owner::cert::SEV_CERT_LEN as u32);
        if len < crate::owner::cert::SEV_CERT_LEN || addr == 0 {
            return Err(SevRetCode::InvalidLen);
        }
        let csr = SevCert::new(
            self.id.pek.verifying_key(),
            crate::owner::cert::usage::PEK,
            crate::owner::cert::algo::ECDSA_SHA256,
            self.id.api,
        );
        self.write(addr, csr.as_bytes())
    }

    fn pek_cert_import(&mut self, b: &mut [u8]) -> Fw {
        use zerocopy::FromBytes;
        if self.sev_state != PlatformState::Init {
            return Err(SevRetCode::InvalidPlatformState);
        }
        let n = crate::owner::cert::SEV_CERT_LEN;
        if rd32(b, 8) as usize != n || rd32(b, 24) as usize != n {
            return Err(SevRetCode::InvalidLen);
        }
        let pek = self.read(rd64(b, 0), n)?;
        let oca = self.read(rd64(b, 16), n)?;
        let (Ok(pek), Ok(oca)) = (
            SevCert::read_from_bytes(&pek),
            SevCert::read_from_bytes(&oca),
        ) else {
            return Err(SevRetCode::InvalidCertificate);
        };
        self.id
            .import_pek(&pek, &oca)
            .map_err(|_| SevRetCode::InvalidCertificate)?;
        let mut rng = self.rng.clone();
        self.id
            .pdh_gen(&mut rng)
            .map_err(|_| SevRetCode::HwsevRetPlatform)?;
        self.rng = rng;
        self.owner_external = true;
        Ok(())
    }

    fn pdh_cert_export(&mut self, b: &mut [u8]) -> Fw {
        use zerocopy::IntoBytes;
        if self.sev_state == PlatformState::Uninit {
            return Err(SevRetCode::InvalidPlatformState);
        }
        let n = crate::owner::cert::SEV_CERT_LEN;
        let (pdh_addr, pdh_len) = (rd64(b, 0), rd32(b, 8) as usize);
        let (chain_addr, chain_len) = (rd64(b, 16), rd32(b, 24) as usize);
        wr32(b, 8, n as u32);
        wr32(b, 24, 3 * n as u32);
        if pdh_len < n || chain_len < 3 * n || pdh_addr == 0 || chain_addr == 0 {
            return Err(SevRetCode::InvalidLen);
        }
        self.write(pdh_addr, self.id.pdh_cert.as_bytes())?;
        let mut chain = Vec::with_capacity(3 * n);
        chain.extend_from_slice(self.id.pek_cert.as_bytes());
        chain.extend_from_slice(self.id.oca_cert.as_bytes());
        chain.extend_from_slice(self.id.cek_cert.as_bytes());
        self.write(chain_addr, &chain)
    }

    fn get_id(&mut self, b: &mut [u8]) -> Fw {
        let (addr, len) = (rd64(b, 0), rd32(b, 8) as usize);
        wr32(b, 8, 128);
        if len < 128 || addr == 0 {
            return Err(SevRetCode::InvalidLen);
        }
        let mut id = [0u8; 128];
        id[..64].copy_from_slice(&self.id.chip_id);
        self.write(addr, &id)
    }

    // ---- ASIDs -------------------------------------------------------------

    /// ACTIVATE checks 1–3 (§6.3): range, ownership, guest already active.
    fn asid_precheck(&self, asid: u32, guest_has_asid: bool) -> Fw {
        if asid == 0 || asid > self.cfg.max_asid {
            return Err(SevRetCode::InvalidAsid);
        }
        match self.asids.get(asid as usize).map(|a| a.0) {
            Some(AsidState::Allocated | AsidState::InUse) => return Err(SevRetCode::AsidOwned),
            None => return Err(SevRetCode::InvalidAsid),
            _ => {}
        }
        if guest_has_asid {
            return Err(SevRetCode::Active);
        }
        Ok(())
    }

    /// ACTIVATE checks 5–6: dirty, ES range; then binds.
    fn asid_bind(&mut self, asid: u32, owner: Owner, es: bool, running: bool) -> Fw {
        if let Some((AsidState::Dirty, _)) = self.asids.get(asid as usize) {
            return Err(SevRetCode::DfflushRequired);
        }
        let ok = if es {
            asid >= 1 && asid < self.cfg.min_sev_asid
        } else {
            asid >= self.cfg.min_sev_asid && asid <= self.cfg.max_asid
        };
        if !ok {
            return Err(SevRetCode::InvalidAsid);
        }
        let st = if running {
            AsidState::InUse
        } else {
            AsidState::Allocated
        };
        if let Some(slot) = self.asids.get_mut(asid as usize) {
            *slot = (st, Some(owner));
        }
        Ok(())
    }

    fn asid_of(&self, owner: Owner) -> Option<u32> {
        self.asids
            .iter()
            .position(|(s, o)| {
                matches!(s, AsidState::Allocated | AsidState::InUse) && *o == Some(owner)
            })
            .map(|i| i as u32)
    }

    /// DEACTIVATE's effect: allocated → clean, in use → dirty (clears WBINVD done).
    fn release_asid(&mut self, owner: Owner) -> bool {
        let Some(a) = self.asid_of(owner) else {
            return false;
        };
        if let Some(slot) = self.asids.get_mut(a as usize) {
            if slot.0 == AsidState::InUse {
                *slot = (AsidState::Dirty, None);
                self.wbinvd_done = false;
            } else {
                *slot = (AsidState::Clean, None);
            }
        }
        true
    }

    /// Completes a pending activation (LAUNCH_FINISH).
    fn asid_run(&mut self, owner: Owner) {
        if let Some(a) = self.asid_of(owner)
            && let Some(slot) = self.asids.get_mut(a as usize)
        {
            slot.0 = AsidState::InUse;
        }
    }

    fn df_flush(&mut self) -> Fw {
        if !self.wbinvd_done {
            return Err(SevRetCode::WbinvdRequired);
        }
        for slot in self.asids.iter_mut() {
            if slot.0 == AsidState::Dirty {
                *slot = (AsidState::Clean, None);
            }
        }
        Ok(())
    }
}
