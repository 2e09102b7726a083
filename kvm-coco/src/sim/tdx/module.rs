//! The software TDX module: TD lifecycle, SEAMCALL legality, MRTD / RTMR, TDREPORT, and
//! private memory.
//!
//! Handles stand for physical pages: a [`TdHandle`] is a TDR, a [`VpHandle`] a TDVPR.
//! Each `tdh_*` method is one host SEAMCALL, each `tdg_*` method one guest TDCALL; they
//! return the module's [`TdxStatus`] on failure, checked in the module's order (TDR
//! lifecycle, TDCS allocation, OP_STATE, then per-call operands).
//!
//! # Private memory model
//! Pages added by TDH.MEM.PAGE.ADD are stored **encrypted** with AES-128-CTR under a per-TD
//! key (derived from the module seed, the HKID and a creation counter), with the page's GPA
//! as the counter block's upper half. It stands for the CPU's per-HKID AES-XTS memory
//! encryption tweaked by the physical address: the host view
//! ([`SimTdxModule::host_read_private`]) returns ciphertext that differs per TD and per
//! address; only the TD's own view ([`SimTdxModule::guest_read_private`]) and TDH.MR.EXTEND
//! (which runs with the TD's key) see the plaintext. It models confidentiality, not the
//! integrity protection or the exact cipher of the hardware.
//!
//! # Secure EPT
//! Secure-EPT pages are tracked per level: with 4-level EPT, levels 3, 2, 1 (512 GiB,
//! 1 GiB, 2 MiB regions) must be added by TDH.MEM.SEPT.ADD, parent first, before
//! TDH.MEM.PAGE.ADD can map a 4 KiB leaf (5-level EPT adds level 4).

use std::collections::{BTreeMap, BTreeSet};

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha384};
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

use super::params::{MAX_NUM_TDCS_PAGES, MIN_NUM_TDCS_PAGES, TdConfig, TdParams, TdxModuleConfig};
use super::report::{QuoteError, QuoteHeaderV4, TDX_REPORT_TYPE, TdQuote, TdQuoteBody, TdReport};
use super::status::{OperandId, TdxStatus};
use crate::measure::calc::{TDX_BLOCK, TDX_EXTEND_CHUNK, tdx_mr_extend_block, tdx_page_add_block};

/// Size of a page.
pub const PAGE_SIZE: usize = 4096;
/// A 4 KiB page.
pub type Page = [u8; PAGE_SIZE];
/// A SHA-384 measurement register.
pub type Measurement = [u8; 48];

type HmacSha256 = Hmac<Sha256>;
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// A TD, named by its TDR page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TdHandle(pub u32);

/// A vCPU of a TD, named by its TDVPR page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VpHandle {
    /// The TD.
    pub td: TdHandle,
    /// Creation order within the TD.
    pub index: u32,
}

/// SEAMCALL leaf numbers (RAX) of the calls the model implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
#[non_exhaustive]
pub enum SeamcallLeaf {
    /// TDH.VP.ENTER.
    VpEnter = 0,
    /// TDH.MNG.ADDCX.
    MngAddcx = 1,
    /// TDH.MEM.PAGE.ADD.
    MemPageAdd = 2,
    /// TDH.MEM.SEPT.ADD.
    MemSeptAdd = 3,
    /// TDH.VP.ADDCX.
    VpAddcx = 4,
    /// TDH.MNG.KEY.CONFIG.
    MngKeyConfig = 8,
    /// TDH.MNG.CREATE.
    MngCreate = 9,
    /// TDH.VP.CREATE.
    VpCreate = 10,
    /// TDH.MNG.RD.
    MngRd = 11,
    /// TDH.MR.EXTEND.
    MrExtend = 16,
    /// TDH.MR.FINALIZE.
    MrFinalize = 17,
    /// TDH.MNG.INIT.
    MngInit = 21,
    /// TDH.VP.INIT.
    VpInit = 22,
}

/// TDR lifecycle state (`td_lifecycle_state_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// 0: HKID assigned, keys not yet configured on every package.
    HkidAssigned = 0,
    /// 1: keys configured.
    KeysConfigured = 1,
    /// 2: blocked (teardown started).
    Blocked = 2,
    /// 3: teardown.
    Teardown = 3,
}

/// TDCS OP_STATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpState {
    /// 0.
    Uninitialized = 0,
    /// 1: after TDH.MNG.INIT (the build phase).
    Initialized = 1,
    /// 2: after TDH.MR.FINALIZE.
    Runnable = 2,
    /// 3.
    LiveExport = 3,
    /// 4.
    PausedExport = 4,
    /// 5.
    PostExport = 5,
    /// 6.
    MemoryImport = 6,
    /// 7.
    StateImport = 7,
    /// 8.
    PostImport = 8,
    /// 9.
    LiveImport = 9,
    /// 10.
    FailedImport = 10,
}

impl SeamcallLeaf {
    /// Whether the leaf is legal in `s` (`seamcall_state_lookup`, firmware facts §5.4).
    pub fn allowed_in(self, s: OpState) -> bool {
        use OpState::*;
        match self {
            Self::MngInit | Self::MngAddcx => s == Uninitialized,
            Self::VpCreate | Self::VpAddcx => matches!(s, Initialized | StateImport),
            Self::VpInit | Self::MemPageAdd | Self::MrExtend | Self::MrFinalize => s == Initialized,
            Self::MemSeptAdd => {
                matches!(
                    s,
                    Initialized
                        | Runnable
                        | LiveExport
                        | MemoryImport
                        | StateImport
                        | PostImport
                        | LiveImport
                )
            }
            Self::VpEnter => matches!(s, Runnable | LiveExport | LiveImport),
            Self::MngRd => s != Uninitialized,
            Self::MngKeyConfig | Self::MngCreate => true,
        }
    }
}

/// vCPU (TDVPS) state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuState {
    /// Created by TDH.VP.CREATE, not yet initialized.
    Uninitialized,
    /// Initialized by TDH.VP.INIT.
    Initialized,
}

#[derive(Debug)]
struct Vp {
    tdvpx: u32,
    state: VcpuState,
    vcpu_index: Option<u32>,
    init_rcx: u64,
}

struct Td {
    hkid: u16,
    lifecycle: Lifecycle,
    packages: BTreeSet<u32>,
    num_tdcx: u32,
    op_state: OpState,
    uuid: [u8; 32],
    config: Option<TdConfig>,
    mr: Sha384,
    mrtd: Measurement,
    rtmr: [Measurement; 4],
    num_vcpus: u32,
    vps: Vec<Vp>,
    sept: BTreeSet<(u8, u64)>,
    pages: BTreeMap<u64, Box<Page>>,
    key: Zeroizing<[u8; 32]>,
}

/// The software TDX module (one per simulated host). See the [module docs](self).
pub struct SimTdxModule {
    config: TdxModuleConfig,
    tds: BTreeMap<u32, Td>,
    hkids: BTreeSet<u16>,
    next: u32,
    report_key: Zeroizing<[u8; 32]>,
    quote_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SimTdxModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTdxModule")
            .field("tds", &self.tds.len())
            .field("hkids_in_use", &self.hkids)
            .finish_non_exhaustive()
    }
}

fn kdf(seed: &[u8; 32], label: &[u8], ctx: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(seed)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(label);
    m.update(ctx);
    Zeroizing::new(m.finalize().into_bytes().into())
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Encrypts or decrypts (the same operation) `buf`, the bytes at `offset` in the page at
/// `gpa`, in place.
fn crypt(key: &[u8; 32], gpa: u64, offset: usize, buf: &mut [u8]) {
    let mut k = Zeroizing::new([0u8; 16]);
    k.copy_from_slice(&key[..16]);
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&gpa.to_be_bytes());
    let mut c = Aes128Ctr::new((&*k).into(), (&iv).into());
    c.seek(offset as u64);
    c.apply_keystream(buf);
}

type R<T = ()> = Result<T, TdxStatus>;

impl SimTdxModule {
    /// A module with capability set and seed `config` (TDH.SYS.INIT and friends done).
    pub fn new(config: TdxModuleConfig) -> Self {
        let report_key = kdf(&config.seed, b"tdreport mac key", &[]);
        let quote_key = kdf(&config.seed, b"quote key", &[]);
        Self {
            config,
            tds: BTreeMap::new(),
            hkids: BTreeSet::new(),
            next: 0,
            report_key,
            quote_key,
        }
    }

    /// The capability set.
    pub fn config(&self) -> &TdxModuleConfig {
        &self.config
    }

    fn td_mut(&mut self, td: TdHandle) -> R<&mut Td> {
        self.tds
            .get_mut(&td.0)
            .ok_or(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX))
    }

    /// Common checks of every call that maps the TDCS: keys configured, enough TDCS pages,
    /// then the OP_STATE legality of `leaf`.
    fn tdcs(&mut self, td: TdHandle, leaf: SeamcallLeaf) -> R<&mut Td> {
        let t = self.td_mut(td)?;
        if t.lifecycle != Lifecycle::KeysConfigured {
            return Err(TdxStatus::TD_KEYS_NOT_CONFIGURED);
        }
        if t.num_tdcx < MIN_NUM_TDCS_PAGES {
            return Err(TdxStatus::TDCS_NOT_ALLOCATED);
        }
        if !leaf.allowed_in(t.op_state) {
            return Err(TdxStatus::OP_STATE_INCORRECT);
        }
        Ok(t)
    }

    /// TDH.MNG.CREATE: a new TD (TDR) with private HKID `hkid`; lifecycle HKID_ASSIGNED and
    /// a fresh TD_UUID.
    ///
    /// # Errors
    /// `TDX_OPERAND_INVALID + RDX` for an HKID outside the private range,
    /// `TDX_HKID_NOT_FREE` for one in use.
    pub fn tdh_mng_create(&mut self, hkid: u16) -> R<TdHandle> {
        if hkid == 0 || hkid > self.config.num_private_hkids {
            return Err(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RDX));
        }
        if self.hkids.contains(&hkid) {
            return Err(TdxStatus::HKID_NOT_FREE);
        }
        let n = self.next;
        self.next += 1;
        let ctx = [&n.to_le_bytes()[..], &hkid.to_le_bytes()].concat();
        let uuid = *kdf(&self.config.seed, b"td uuid", &ctx);
        let key = kdf(&self.config.seed, b"td memory key", &ctx);
        self.hkids.insert(hkid);
        self.tds.insert(
            n,
            Td {
                hkid,
                lifecycle: Lifecycle::HkidAssigned,
                packages: BTreeSet::new(),
                num_tdcx: 0,
                op_state: OpState::Uninitialized,
                uuid,
                config: None,
                mr: Sha384::new(),
                mrtd: [0; 48],
                rtmr: [[0; 48]; 4],
                num_vcpus: 0,
                vps: Vec::new(),
                sept: BTreeSet::new(),
                pages: BTreeMap::new(),
                key,
            },
        );
        Ok(TdHandle(n))
    }

    /// TDH.MNG.KEY.CONFIG on `package`; after the last package the TD is KEYS_CONFIGURED.
    ///
    /// # Errors
    /// `TDX_LIFECYCLE_STATE_INCORRECT` unless HKID_ASSIGNED; `TDX_KEY_CONFIGURED` if this
    /// package already has the key; `TDX_OPERAND_INVALID` for an unknown package.
    pub fn tdh_mng_key_config(&mut self, td: TdHandle, package: u32) -> R {
        let packages = self.config.num_packages;
        let t = self.td_mut(td)?;
        if t.lifecycle != Lifecycle::HkidAssigned {
            return Err(TdxStatus::LIFECYCLE_STATE_INCORRECT);
        }
        if package >= packages {
            return Err(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RAX));
        }
        if !t.packages.insert(package) {
            return Err(TdxStatus::KEY_CONFIGURED);
        }
        if t.packages.len() as u32 == packages {
            t.lifecycle = Lifecycle::KeysConfigured;
        }
        Ok(())
    }

    /// TDH.MNG.ADDCX: adds one TDCS page (up to 9).
    ///
    /// # Errors
    /// `TDX_TD_KEYS_NOT_CONFIGURED`; `TDX_OP_STATE_INCORRECT` once the TDCS exists and the
    /// TD is initialized; `TDX_TDCX_NUM_INCORRECT` beyond 9 pages.
    pub fn tdh_mng_addcx(&mut self, td: TdHandle) -> R {
        let t = self.td_mut(td)?;
        if t.lifecycle != Lifecycle::KeysConfigured {
            return Err(TdxStatus::TD_KEYS_NOT_CONFIGURED);
        }
        if t.num_tdcx >= MIN_NUM_TDCS_PAGES && !SeamcallLeaf::MngAddcx.allowed_in(t.op_state) {
            return Err(TdxStatus::OP_STATE_INCORRECT);
        }
        if t.num_tdcx >= MAX_NUM_TDCS_PAGES {
            return Err(TdxStatus::TDCX_NUM_INCORRECT.with_operand(OperandId::RCX));
        }
        t.num_tdcx += 1;
        Ok(())
    }

    /// TDH.MNG.INIT: validates `params` ([`TdxModuleConfig::validate`]), starts MRTD
    /// (`SHA384` init), zeroes the RTMRs; OP_STATE → INITIALIZED.
    ///
    /// # Errors
    /// The common TDCS checks; `TDX_OPERAND_INVALID + field` for bad TD_PARAMS (the second
    /// value of the error is the RCX output: the CPUID leaf of a CPUID_CONFIG error).
    pub fn tdh_mng_init(
        &mut self,
        td: TdHandle,
        params: &TdParams,
    ) -> Result<(), (TdxStatus, u64)> {
        let validated = self.config.validate(params);
        let t = self.tdcs(td, SeamcallLeaf::MngInit).map_err(|s| (s, 0))?;
        let cfg = validated?;
        t.config = Some(cfg);
        t.mr = Sha384::new();
        t.rtmr = [[0; 48]; 4];
        t.op_state = OpState::Initialized;
        Ok(())
    }

    /// TDH.VP.CREATE: a new vCPU (TDVPR) of `td`.
    ///
    /// # Errors
    /// The common TDCS checks (OP_STATE INITIALIZED or STATE_IMPORT).
    pub fn tdh_vp_create(&mut self, td: TdHandle) -> R<VpHandle> {
        let t = self.tdcs(td, SeamcallLeaf::VpCreate)?;
        let index = t.vps.len() as u32;
        t.vps.push(Vp {
            tdvpx: 0,
            state: VcpuState::Uninitialized,
            vcpu_index: None,
            init_rcx: 0,
        });
        Ok(VpHandle { td, index })
    }

    fn vp(&mut self, vp: VpHandle, leaf: SeamcallLeaf) -> R<(&mut Vp, &mut u32, Option<u16>)> {
        let t = self.tdcs(vp.td, leaf)?;
        let max = t.config.as_ref().map(|c| c.max_vcpus);
        let Td { vps, num_vcpus, .. } = t;
        let v = vps
            .get_mut(vp.index as usize)
            .ok_or(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX))?;
        Ok((v, num_vcpus, max))
    }

    /// TDH.VP.ADDCX: adds one TDVPS page to a vCPU.
    ///
    /// # Errors
    /// The common TDCS checks; `TDX_VCPU_STATE_INCORRECT` after TDH.VP.INIT;
    /// `TDX_TDCX_NUM_INCORRECT` beyond the TDVPS size.
    pub fn tdh_vp_addcx(&mut self, vp: VpHandle) -> R {
        let need = self.config.tdvps_pages.saturating_sub(1);
        let (v, _, _) = self.vp(vp, SeamcallLeaf::VpAddcx)?;
        if v.state != VcpuState::Uninitialized {
            return Err(TdxStatus::VCPU_STATE_INCORRECT);
        }
        if v.tdvpx >= need {
            return Err(TdxStatus::TDCX_NUM_INCORRECT.with_operand(OperandId::RCX));
        }
        v.tdvpx += 1;
        Ok(())
    }

    /// TDH.VP.INIT: initializes a vCPU with initial RCX `rcx`; it gets the next vCPU index
    /// and counts towards TDH.MR.FINALIZE's "at least one vCPU".
    ///
    /// # Errors
    /// The common TDCS checks (OP_STATE INITIALIZED); `TDX_VCPU_STATE_INCORRECT` if already
    /// initialized; `TDX_TDCX_NUM_INCORRECT` if TDVPS pages are missing;
    /// `TDX_MAX_VCPUS_EXCEEDED` past MAX_VCPUS.
    pub fn tdh_vp_init(&mut self, vp: VpHandle, rcx: u64) -> R {
        let need = self.config.tdvps_pages.saturating_sub(1);
        let (v, num_vcpus, max) = self.vp(vp, SeamcallLeaf::VpInit)?;
        if v.state != VcpuState::Uninitialized {
            return Err(TdxStatus::VCPU_STATE_INCORRECT);
        }
        if v.tdvpx != need {
            return Err(TdxStatus::TDCX_NUM_INCORRECT.with_operand(OperandId::RCX));
        }
        if *num_vcpus >= u32::from(max.unwrap_or(0)) {
            return Err(TdxStatus::MAX_VCPUS_EXCEEDED);
        }
        v.vcpu_index = Some(*num_vcpus);
        *num_vcpus += 1;
        v.state = VcpuState::Initialized;
        v.init_rcx = rcx;
        Ok(())
    }

    fn check_gpa(t: &Td, gpa: u64) -> R {
        let cfg = t.config.as_ref().ok_or(TdxStatus::OP_STATE_INCORRECT)?;
        let width = if cfg.gpaw52 { 52 } else { 48 };
        if gpa >> width != 0 || gpa & cfg.shared_bit() != 0 {
            return Err(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX));
        }
        Ok(())
    }

    fn levels(t: &Td) -> u8 {
        t.config.as_ref().map_or(4, |c| c.ept_levels)
    }

    fn region(gpa: u64, level: u8) -> u64 {
        let shift = 12 + 9 * u32::from(level.min(5));
        gpa >> shift << shift
    }

    /// Walks the Secure EPT down to (excluding) `level`; the first missing level fails.
    fn walk(t: &Td, gpa: u64, level: u8) -> R {
        for l in (level.saturating_add(1)..Self::levels(t)).rev() {
            if !t.sept.contains(&(l, Self::region(gpa, l))) {
                return Err(TdxStatus::EPT_WALK_FAILED.with_operand(OperandId::RCX));
            }
        }
        Ok(())
    }

    /// TDH.MEM.SEPT.ADD: adds the Secure-EPT page of `level` (1..levels−1) that maps the
    /// region containing `gpa`.
    ///
    /// # Errors
    /// The common TDCS checks; `TDX_OPERAND_INVALID + RCX` for a bad level or GPA;
    /// `TDX_EPT_WALK_FAILED + RCX` without the parent; `TDX_EPT_ENTRY_STATE_INCORRECT + RCX`
    /// if already added.
    pub fn tdh_mem_sept_add(&mut self, td: TdHandle, gpa: u64, level: u8) -> R {
        let t = self.tdcs(td, SeamcallLeaf::MemSeptAdd)?;
        Self::check_gpa(t, gpa)?;
        if level == 0 || level >= Self::levels(t) {
            return Err(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX));
        }
        Self::walk(t, gpa, level)?;
        if !t.sept.insert((level, Self::region(gpa, level))) {
            return Err(TdxStatus::EPT_ENTRY_STATE_INCORRECT.with_operand(OperandId::RCX));
        }
        Ok(())
    }

    /// Whether the Secure-EPT page of `level` covering `gpa` exists.
    pub fn sept_present(&self, td: TdHandle, gpa: u64, level: u8) -> bool {
        self.tds
            .get(&td.0)
            .is_some_and(|t| t.sept.contains(&(level, Self::region(gpa, level))))
    }

    /// Secure-EPT levels of the TD (4 or 5), once initialized.
    pub fn ept_levels(&self, td: TdHandle) -> Option<u8> {
        self.tds
            .get(&td.0)
            .and_then(|t| t.config.as_ref())
            .map(|c| c.ept_levels)
    }

    /// TDH.MEM.PAGE.ADD: maps a 4 KiB private page at `gpa` with the content of `source`
    /// (copied and encrypted with the TD key) and appends the PAGE.ADD block to MRTD.
    ///
    /// # Errors
    /// The common TDCS checks (OP_STATE INITIALIZED only); `TDX_OPERAND_INVALID + RCX` for
    /// an unaligned, shared or too-wide GPA; `TDX_EPT_WALK_FAILED + RCX` without Secure-EPT
    /// parents; `TDX_EPT_ENTRY_STATE_INCORRECT + RCX` for a GPA already mapped.
    pub fn tdh_mem_page_add(&mut self, td: TdHandle, gpa: u64, source: &Page) -> R {
        let t = self.tdcs(td, SeamcallLeaf::MemPageAdd)?;
        if !gpa.is_multiple_of(PAGE_SIZE as u64) {
            return Err(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX));
        }
        Self::check_gpa(t, gpa)?;
        Self::walk(t, gpa, 0)?;
        if t.pages.contains_key(&gpa) {
            return Err(TdxStatus::EPT_ENTRY_STATE_INCORRECT.with_operand(OperandId::RCX));
        }
        let mut page = Box::new(*source);
        crypt(&t.key, gpa, 0, &mut page[..]);
        t.pages.insert(gpa, page);
        t.mr.update(tdx_page_add_block(gpa));
        Ok(())
    }

    /// TDH.MR.EXTEND: appends the MR.EXTEND header block for `gpa` and the 256 bytes of the
    /// TD page there (decrypted with the TD key) to MRTD.
    ///
    /// # Errors
    /// The common TDCS checks (OP_STATE INITIALIZED only); `TDX_OPERAND_INVALID + RCX` for
    /// a GPA not 256-byte aligned; `TDX_EPT_ENTRY_NOT_PRESENT + RCX` when the page is not
    /// mapped (a failed Secure-EPT walk is reported the same way).
    pub fn tdh_mr_extend(&mut self, td: TdHandle, gpa: u64) -> R {
        let t = self.tdcs(td, SeamcallLeaf::MrExtend)?;
        if !gpa.is_multiple_of(TDX_EXTEND_CHUNK as u64) {
            return Err(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX));
        }
        Self::check_gpa(t, gpa)?;
        let base = gpa & !(PAGE_SIZE as u64 - 1);
        let off = (gpa - base) as usize;
        let not_present = TdxStatus::EPT_ENTRY_NOT_PRESENT.with_operand(OperandId::RCX);
        let page = t.pages.get(&base).ok_or(not_present)?;
        let mut chunk = Zeroizing::new([0u8; TDX_EXTEND_CHUNK]);
        chunk.copy_from_slice(page.get(off..off + TDX_EXTEND_CHUNK).ok_or(not_present)?);
        crypt(&t.key, base, off, &mut chunk[..]);
        t.mr.update(tdx_mr_extend_block(gpa));
        t.mr.update(&chunk[..]);
        debug_assert_eq!(chunk.len(), 2 * TDX_BLOCK);
        Ok(())
    }

    /// TDH.MR.FINALIZE: MRTD = SHA-384 finalize; OP_STATE → RUNNABLE.
    ///
    /// # Errors
    /// The common TDCS checks (OP_STATE INITIALIZED only); `TDX_NO_VCPUS` without an
    /// initialized vCPU.
    pub fn tdh_mr_finalize(&mut self, td: TdHandle) -> R {
        let t = self.tdcs(td, SeamcallLeaf::MrFinalize)?;
        if t.num_vcpus == 0 {
            return Err(TdxStatus::NO_VCPUS);
        }
        let mr = std::mem::replace(&mut t.mr, Sha384::new());
        t.mrtd = mr.finalize().into();
        t.op_state = OpState::Runnable;
        Ok(())
    }

    /// TDH.VP.ENTER legality: the TD is runnable and the vCPU initialized. (The model does
    /// not execute guest code; a caller scripts what the guest does.)
    ///
    /// # Errors
    /// The common TDCS checks (OP_STATE RUNNABLE, LIVE_EXPORT, LIVE_IMPORT);
    /// `TDX_VCPU_STATE_INCORRECT` for an uninitialized vCPU.
    pub fn tdh_vp_enter(&mut self, vp: VpHandle) -> R {
        let (v, _, _) = self.vp(vp, SeamcallLeaf::VpEnter)?;
        if v.state != VcpuState::Initialized {
            return Err(TdxStatus::VCPU_STATE_INCORRECT);
        }
        Ok(())
    }

    /// Frees the TD and its HKID (the model of TDH.MNG.VPFLUSHDONE, TDH.PHYMEM.CACHE.WB,
    /// TDH.MNG.KEY.FREEID and reclaiming every page).
    pub fn teardown(&mut self, td: TdHandle) {
        if let Some(t) = self.tds.remove(&td.0) {
            self.hkids.remove(&t.hkid);
        }
    }

    /// An unused private HKID, if any (what the kernel's key-id allocator hands out).
    pub fn free_hkid(&self) -> Option<u16> {
        (1..=self.config.num_private_hkids).find(|h| !self.hkids.contains(h))
    }

    /// The TD's lifecycle state.
    pub fn lifecycle(&self, td: TdHandle) -> Option<Lifecycle> {
        self.tds.get(&td.0).map(|t| t.lifecycle)
    }

    /// The TD's OP_STATE.
    pub fn op_state(&self, td: TdHandle) -> Option<OpState> {
        self.tds.get(&td.0).map(|t| t.op_state)
    }

    /// The vCPU's state and index.
    pub fn vcpu_state(&self, vp: VpHandle) -> Option<(VcpuState, Option<u32>)> {
        let v = self.tds.get(&vp.td.0)?.vps.get(vp.index as usize)?;
        Some((v.state, v.vcpu_index))
    }

    /// The TD configuration stored by TDH.MNG.INIT.
    pub fn td_config(&self, td: TdHandle) -> Option<&TdConfig> {
        self.tds.get(&td.0).and_then(|t| t.config.as_ref())
    }

    /// TD_UUID.
    pub fn td_uuid(&self, td: TdHandle) -> Option<[u8; 32]> {
        self.tds.get(&td.0).map(|t| t.uuid)
    }

    /// MRTD, once finalized (TDH.MNG.RD of MRTD).
    pub fn mrtd(&self, td: TdHandle) -> Option<Measurement> {
        self.tds
            .get(&td.0)
            .filter(|t| t.op_state == OpState::Runnable)
            .map(|t| t.mrtd)
    }

    /// The TD's virtual CPUID value of `leaf`/`subleaf` (TDH.MNG.RD of the CPUID fields):
    /// `None` if the module does not virtualize that leaf.
    pub fn td_cpuid(&self, td: TdHandle, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        let cfg = self.td_config(td)?;
        cfg.cpuid
            .iter()
            .find(|c| c.0 == leaf && c.1 == subleaf)
            .map(|c| c.2)
    }

    /// What the host reads from the physical page behind private `gpa`: ciphertext.
    pub fn host_read_private(&self, td: TdHandle, gpa: u64) -> Option<Page> {
        self.tds.get(&td.0)?.pages.get(&gpa).map(|p| **p)
    }

    /// What the TD reads at private `gpa` (decrypted with its key).
    pub fn guest_read_private(&self, td: TdHandle, gpa: u64) -> Option<Zeroizing<Page>> {
        let t = self.tds.get(&td.0)?;
        let mut p = Zeroizing::new(**t.pages.get(&gpa)?);
        crypt(&t.key, gpa, 0, &mut p[..]);
        Some(p)
    }

    fn running(&mut self, td: TdHandle) -> R<&mut Td> {
        let t = self.td_mut(td)?;
        if t.op_state != OpState::Runnable {
            return Err(TdxStatus::OP_STATE_INCORRECT);
        }
        Ok(t)
    }

    /// TDG.MR.RTMR.EXTEND from inside the TD: `RTMR[index] = SHA384(RTMR[index] ‖ ext)`.
    ///
    /// # Errors
    /// `TDX_OPERAND_INVALID + RDX` for `index ≥ 4`; `TDX_OP_STATE_INCORRECT` if the TD is not
    /// running (a guest only runs once RUNNABLE).
    pub fn tdg_mr_rtmr_extend(&mut self, td: TdHandle, index: u32, ext: &Measurement) -> R {
        let t = self.running(td)?;
        let r = t
            .rtmr
            .get_mut(index as usize)
            .ok_or(TdxStatus::OPERAND_INVALID.with_operand(OperandId::RDX))?;
        let mut h = Sha384::new();
        h.update(*r);
        h.update(ext);
        *r = h.finalize().into();
        Ok(())
    }

    /// RTMR `index` of the TD.
    pub fn rtmr(&self, td: TdHandle, index: usize) -> Option<Measurement> {
        self.tds.get(&td.0)?.rtmr.get(index).copied()
    }

    /// TDG.MR.REPORT from inside the TD: a TDREPORT_STRUCT binding `report_data`, MAC'ed
    /// under the module's report key (HMAC-SHA256, a model of the CPU MAC).
    ///
    /// # Errors
    /// `TDX_OP_STATE_INCORRECT` if the TD is not running.
    pub fn tdg_mr_report(&mut self, td: TdHandle, report_data: &[u8; 64]) -> R<TdReport> {
        let c = self.config.clone();
        let t = self.running(td)?;
        let cfg = t.config.as_ref().ok_or(TdxStatus::OP_STATE_INCORRECT)?;
        let mut r = TdReport::zeroed();
        r.tee_tcb_info.valid = 0xF.into();
        r.tee_tcb_info.tee_tcb_svn = c.tee_tcb_svn;
        r.tee_tcb_info.mrseam = c.mrseam;
        r.tee_tcb_info.mrsignerseam = c.mrsignerseam;
        r.tee_tcb_info.attributes = c.seam_attributes.into();
        r.td_info.attributes = cfg.attributes.into();
        r.td_info.xfam = cfg.xfam.into();
        r.td_info.mrtd = t.mrtd;
        r.td_info.mrconfigid = cfg.mr_config_id;
        r.td_info.mrowner = cfg.mr_owner;
        r.td_info.mrownerconfig = cfg.mr_owner_config;
        r.td_info.rtmr = t.rtmr;
        r.report_mac.report_type = [TDX_REPORT_TYPE, 0, 0, 0];
        r.report_mac.cpusvn = c.cpusvn;
        r.report_mac.report_data = *report_data;
        r.report_mac.tee_tcb_info_hash = r.compute_tee_tcb_info_hash();
        r.report_mac.tee_info_hash = r.compute_tee_info_hash();
        r.report_mac.mac = hmac(&self.report_key, &[r.mac_input()]);
        Ok(r)
    }

    /// Verifies a TDREPORT produced on this (simulated) platform, as the quoting enclave
    /// does with `EVERIFYREPORT2`: both hashes, then the MAC.
    ///
    /// # Errors
    /// [`QuoteError::ReportMac`] naming the first check that fails.
    pub fn verify_report(&self, r: &TdReport) -> Result<(), QuoteError> {
        if r.report_mac.tee_tcb_info_hash != r.compute_tee_tcb_info_hash() {
            return Err(QuoteError::ReportMac("TEE_TCB_INFO_HASH mismatch"));
        }
        if r.report_mac.tee_info_hash != r.compute_tee_info_hash() {
            return Err(QuoteError::ReportMac("TEE_INFO_HASH mismatch"));
        }
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.report_key[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(r.mac_input());
        m.verify_slice(&r.report_mac.mac)
            .map_err(|_| QuoteError::ReportMac("MAC mismatch"))
    }

    /// The model quoting enclave: verifies `report` and returns a TD quote v4 whose body is
    /// taken from it and whose signature data is an HMAC-SHA256 under the model's quoting
    /// key (32 bytes; not an ECDSA signature).
    ///
    /// # Errors
    /// [`QuoteError::ReportMac`] if the report does not verify.
    pub fn quote(&self, report: &TdReport) -> Result<TdQuote, QuoteError> {
        self.verify_report(report)?;
        let mut q = TdQuote {
            header: QuoteHeaderV4::td_v4(),
            body: TdQuoteBody::from_report(report),
            signature: Vec::new(),
        };
        q.signature = hmac(&self.quote_key, &[q.header.as_bytes(), q.body.as_bytes()]).to_vec();
        Ok(q)
    }

    /// Verifies the model signature of a quote produced by [`quote`](Self::quote).
    ///
    /// # Errors
    /// [`QuoteError::Signature`].
    pub fn verify_quote(&self, q: &TdQuote) -> Result<(), QuoteError> {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.quote_key[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(&q.signed_bytes());
        m.verify_slice(&q.signature)
            .map_err(|_| QuoteError::Signature)
    }
}
