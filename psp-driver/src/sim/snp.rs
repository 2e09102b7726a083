//! SEV-SNP platform and guest commands, the RMP model, and attestation reports
//! (facts §3.3–§3.9, §6.4, §6.5).

use std::sync::Arc;

use sha2::{Digest, Sha384};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroizing;

use super::mem::PAGE_SIZE;
use super::{
    AsidState, Fw, Owner, PlatformState, SimFirmware, State, mem_crypt, rd32, rd64, wr, wr32,
};
use crate::SevRetCode as S;
use crate::digest::{PageInfo, SnpPageType, snp_page_contents};
use crate::owner::cert::{algo, decode_public_key, sign_message, verify_message};
use crate::owner::snp::{IdAuth, IdBlock};
use crate::report::{AttestationReport, CURVE_P384, SIG_ALGO_ECDSA_P384_SHA384};

/// SNP guest states (stored in the guest context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SnpGuestState {
    /// Context created, not launched.
    Init = 0,
    /// Between SNP_LAUNCH_START and SNP_LAUNCH_FINISH.
    Launch = 1,
    /// Launched.
    Running = 2,
}

/// A page's SNP content digest computed before the `SNP_LAUNCH_UPDATE` that will add the
/// page (see [`SimFirmware::add_contents_hints`]), with the bytes it was computed over.
///
/// The firmware model uses the digest only if the page it reads then holds exactly these
/// bytes and the command's page type matches; otherwise it hashes the page itself. A hint
/// can therefore never change a measurement, only spare the firmware's own hashing: the
/// caller computes the digests of a batch on all cores while the commands themselves run
/// one page at a time, as KVM issues them.
#[derive(Clone, Debug)]
pub struct ContentsHint {
    /// The page type the digest was computed for.
    pub page_type: SnpPageType,
    /// The digest ([`snp_page_contents`] of the page).
    pub digest: [u8; 48],
    /// The buffer holding the page.
    pub buf: Arc<[u8]>,
    /// Offset of the page in `buf`.
    pub offset: usize,
}

impl ContentsHint {
    /// The 4 KiB the digest was computed over (`None` if `buf` is too short).
    fn bytes(&self) -> Option<&[u8]> {
        self.buf
            .get(self.offset..self.offset.checked_add(PAGE_SIZE)?)
    }
}

/// One RMP entry (per 4 KiB page; a 2 MiB entry is recorded on each of its
/// 512 pages with `page_size_2m` set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RmpEntry {
    /// Assigned to a guest or the firmware.
    pub assigned: bool,
    /// Part of a 2 MiB RMP entry.
    pub page_size_2m: bool,
    /// Immutable (cannot be changed by RMPUPDATE).
    pub immutable: bool,
    /// Guest physical address of the page (full address, page aligned).
    pub gpa: u64,
    /// Owning ASID.
    pub asid: u32,
    /// VMSA flag (also marks a guest context page).
    pub vmsa: bool,
    /// Validated by the guest (or by SNP_LAUNCH_UPDATE).
    pub validated: bool,
    /// VMPL1..3 permissions.
    pub perms: [u8; 3],
}

/// Page states derived from an [`RmpEntry`] (facts §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmpState {
    /// Owned by the hypervisor.
    Hypervisor,
    /// Hypervisor-owned, immutable.
    HvFixed,
    /// Owned by the firmware.
    Firmware,
    /// Being reclaimed.
    Reclaim,
    /// A guest context page.
    Context,
    /// Assigned to a guest, awaiting SNP_LAUNCH_UPDATE.
    PreGuest,
    /// Swapped-out guest page.
    PreSwap,
    /// Guest page not validated.
    GuestInvalid,
    /// Validated guest page.
    GuestValid,
}

impl RmpEntry {
    /// The derived page state.
    pub fn state(&self) -> RmpState {
        match (
            self.assigned,
            self.validated,
            self.asid != 0,
            self.immutable,
        ) {
            (false, _, _, false) => RmpState::Hypervisor,
            (false, _, _, true) => RmpState::HvFixed,
            (true, false, false, true) if self.vmsa && self.gpa == 0 => RmpState::Context,
            (true, false, false, true) => RmpState::Firmware,
            (true, _, false, false) => RmpState::Reclaim,
            (true, false, true, true) => RmpState::PreGuest,
            (true, true, true, true) => RmpState::PreSwap,
            (true, false, true, false) => RmpState::GuestInvalid,
            (true, true, true, false) => RmpState::GuestValid,
            (true, true, false, true) => RmpState::Firmware,
        }
    }
}

/// Errors of the host-side RMPUPDATE model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RmpError {
    /// The address is not aligned to the page size.
    #[error("address not aligned to the page size")]
    Unaligned,
    /// The entry is immutable or in a state RMPUPDATE cannot change.
    #[error("RMP entry is immutable or in the wrong state")]
    WrongState,
}

/// One allowed CPUID leaf of a [`CpuidPolicy`]: the bits a guest may see set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidMask {
    /// Leaf (EAX input).
    pub eax_in: u32,
    /// Sub-leaf (ECX input).
    pub ecx_in: u32,
    /// Allowed bits of EAX, EBX, ECX, EDX.
    pub allowed: [u32; 4],
}

/// What the firmware accepts in a CPUID page: for each listed leaf, the bits
/// that may be set; leaves not listed pass unchanged. (The real firmware checks
/// against the hardware's capabilities; this models the same outcome.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidPolicy {
    /// The checked leaves.
    pub masks: Vec<CpuidMask>,
}

impl Default for CpuidPolicy {
    fn default() -> Self {
        Self {
            masks: vec![
                // Leaf 7.0: no SGX (EBX bit 2), no hybrid (EDX bit 15).
                CpuidMask {
                    eax_in: 7,
                    ecx_in: 0,
                    allowed: [!0, !(1 << 2), !0, !(1 << 15)],
                },
                // Leaf 0x8000001F: the guest may not claim SME (EAX bit 0).
                CpuidMask {
                    eax_in: 0x8000_001F,
                    ecx_in: 0,
                    allowed: [!1, !0, !0, !0],
                },
            ],
        }
    }
}

const POLICY_SMT: u64 = 1 << 16;
const POLICY_RSVD17: u64 = 1 << 17;
const POLICY_MIGRATE_MA: u64 = 1 << 18;
const POLICY_DEBUG: u64 = 1 << 19;
const POLICY_SINGLE_SOCKET: u64 = 1 << 20;
const POLICY_RESERVED: u64 = !((1 << 21) - 1);

pub(crate) struct SnpGuest {
    state: SnpGuestState,
    policy: u64,
    vek: Arc<Zeroizing<[u8; 16]>>,
    ld: [u8; 48],
    imd: [u8; 48],
    imi_en: bool,
    ma_en: bool,
    report_id: [u8; 32],
    report_id_ma: [u8; 32],
    vmpck: Zeroizing<[[u8; 32]; 4]>,
    gosvw: [u8; 16],
    desired_tsc: u32,
    id_block: Option<IdBlock>,
    id_key_digest: [u8; 48],
    author_key_digest: [u8; 48],
    author_key_en: bool,
    vcek_dis: bool,
    host_data: [u8; 32],
    launch_tcb: u64,
    /// Messages exchanged per VMPCK (the last sequence number used).
    msg_count: [u64; 4],
}

fn page_aligned(pa: u64) -> bool {
    pa.is_multiple_of(PAGE_SIZE as u64)
}

impl State {
    fn rmp(&self, pa: u64) -> RmpEntry {
        self.rmp
            .get(&(pa & !(PAGE_SIZE as u64 - 1)))
            .copied()
            .unwrap_or_default()
    }

    fn require_snp(&self) -> Fw {
        if self.snp_init {
            Ok(())
        } else {
            Err(S::InvalidPlatformState)
        }
    }

    fn context(&self, gctx: u64) -> Fw<&SnpGuest> {
        if self.rmp(gctx).state() != RmpState::Context {
            return Err(S::InvalidGuest);
        }
        self.snp_guests.get(&gctx).ok_or(S::InvalidGuest)
    }

    fn context_mut(&mut self, gctx: u64) -> Fw<&mut SnpGuest> {
        if self.rmp(gctx).state() != RmpState::Context {
            return Err(S::InvalidGuest);
        }
        self.snp_guests.get_mut(&gctx).ok_or(S::InvalidGuest)
    }

    pub(super) fn snp_init_cmd(&mut self, b: Option<&mut [u8]>) -> Fw {
        if let Some(b) = &b
            && (rd32(b, 0) & !0x1F != 0 || rd32(b, 4) != 0)
        {
            return Err(S::InvalidParam);
        }
        if self.snp_init || self.sev_state != PlatformState::Uninit {
            return Err(S::InvalidPlatformState);
        }
        self.snp_init = true;
        Ok(())
    }

    pub(super) fn snp_shutdown(&mut self) -> Fw {
        if self.sev_state != PlatformState::Uninit {
            return Err(S::InvalidPlatformState);
        }
        if !self.snp_guests.is_empty() {
            return Err(S::InvalidPlatformState);
        }
        self.snp_init = false;
        Ok(())
    }

    /// SNP_PLATFORM_STATUS's guest count: the contexts past SNP_LAUNCH_START.
    fn snp_guest_count(&self) -> u32 {
        let n = self.snp_guests.values();
        n.filter(|g| g.state != SnpGuestState::Init).count() as u32
    }

    pub(super) fn snp_platform_status(&mut self, b: &mut [u8]) -> Fw {
        let pa = rd64(b, 0);
        if self.snp_init && self.rmp(pa).state() != RmpState::Firmware {
            return Err(S::InvalidPageState);
        }
        let mut s = [0u8; 32];
        s[0] = self.cfg.api_major;
        s[1] = self.cfg.api_minor;
        s[2] = u8::from(self.snp_init);
        s[3] = u8::from(self.snp_init);
        s[4] = self.cfg.build;
        s[12..16].copy_from_slice(&self.snp_guest_count().to_le_bytes());
        s[16..24].copy_from_slice(&self.cfg.tcb.0.to_le_bytes());
        s[24..32].copy_from_slice(&self.cfg.tcb.0.to_le_bytes());
        self.write(pa, &s)
    }

    pub(super) fn snp_gctx_create(&mut self, b: &mut [u8]) -> Fw {
        let gctx = rd64(b, 0);
        if !page_aligned(gctx) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let e = self.rmp(gctx);
        if e.state() != RmpState::Firmware {
            return Err(S::InvalidPageState);
        }
        if e.page_size_2m {
            return Err(S::InvalidPageSize);
        }
        self.write(gctx, &[0u8; PAGE_SIZE])?;
        self.rmp.insert(gctx, RmpEntry { vmsa: true, ..e });
        let vek = self.draw_key();
        self.snp_guests.insert(
            gctx,
            SnpGuest {
                state: SnpGuestState::Init,
                policy: 0,
                vek,
                ld: [0; 48],
                imd: [0; 48],
                imi_en: false,
                ma_en: false,
                report_id: [0; 32],
                report_id_ma: [0; 32],
                vmpck: Zeroizing::new([[0; 32]; 4]),
                gosvw: [0; 16],
                desired_tsc: 0,
                id_block: None,
                id_key_digest: [0; 48],
                author_key_digest: [0; 48],
                author_key_en: false,
                vcek_dis: false,
                host_data: [0; 32],
                launch_tcb: self.cfg.tcb.0,
                msg_count: [0; 4],
            },
        );
        Ok(())
    }

    pub(super) fn snp_launch_start(&mut self, b: &mut [u8]) -> Fw {
        let (gctx, policy, ma_gctx, flags) = (rd64(b, 0), rd64(b, 8), rd64(b, 16), rd32(b, 24));
        if !page_aligned(gctx) || !page_aligned(ma_gctx) || flags & !3 != 0 {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let g = self.context(gctx)?;
        if g.state != SnpGuestState::Init {
            return Err(S::InvalidGuestState);
        }
        let (ma_en, imi_en) = (flags & 1 != 0, flags & 2 != 0);
        let ma = if ma_en {
            Some(self.context(ma_gctx)?)
        } else {
            None
        };
        let (abi_minor, abi_major) = (policy as u8, (policy >> 8) as u8);
        let too_new = abi_major > self.cfg.api_major
            || (abi_major == self.cfg.api_major && abi_minor > self.cfg.api_minor);
        let fail = (ma_en && policy & POLICY_MIGRATE_MA == 0)
            || ma.is_some_and(|m| m.ma_en)
            || policy & POLICY_RSVD17 == 0
            || (policy & POLICY_SMT == 0 && self.cfg.smt_enabled)
            || too_new
            || policy & POLICY_RESERVED != 0
            || (ma_en
                && policy & POLICY_SINGLE_SOCKET != 0
                && ma.is_some_and(|m| m.policy & POLICY_SINGLE_SOCKET == 0));
        if fail {
            return Err(S::PolicyFailure);
        }
        let report_id_ma = ma.map_or([0xFF; 32], |m| m.report_id);
        let mut vmpck = Zeroizing::new([[0u8; 32]; 4]);
        for k in vmpck.iter_mut() {
            *k = self.draw();
        }
        let report_id: [u8; 32] = self.draw();
        let mut gosvw = [0u8; 16];
        gosvw.copy_from_slice(b.get(32..48).unwrap_or(&[0; 16]));
        let tsc = rd32(b, 28);
        let g = self.context_mut(gctx)?;
        g.policy = policy;
        g.vmpck = vmpck;
        g.report_id = report_id;
        g.report_id_ma = report_id_ma;
        g.imi_en = imi_en;
        g.ma_en = ma_en;
        g.gosvw = gosvw;
        g.desired_tsc = tsc;
        g.state = SnpGuestState::Launch;
        Ok(())
    }

    pub(super) fn snp_activate(&mut self, b: &mut [u8]) -> Fw {
        let (gctx, asid) = (rd64(b, 0), rd32(b, 8));
        if !page_aligned(gctx) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let g = self.context(gctx)?;
        if !matches!(g.state, SnpGuestState::Launch | SnpGuestState::Running) {
            return Err(S::InvalidGuestState);
        }
        let running = g.state == SnpGuestState::Running;
        if asid != 0 && self.rmp.values().any(|e| e.assigned && e.asid == asid) {
            return Err(S::InvalidConfig);
        }
        self.asid_precheck(asid, self.asid_of(Owner::Snp(gctx)).is_some())?;
        self.asid_bind(asid, Owner::Snp(gctx), true, running)
    }

    pub(super) fn snp_launch_update(&mut self, b: &mut [u8]) -> Fw {
        // A hint serves the command naming its page only, whatever the outcome: taken out
        // here, once, before any check can end the command.
        let pa = rd64(b, 16);
        let count = if rd32(b, 8) & 1 != 0 { 512 } else { 1 };
        let hints: Vec<Option<ContentsHint>> = (0..count)
            .map(|i| self.contents_hints.remove(&(pa + (i * PAGE_SIZE) as u64)))
            .collect();
        self.snp_launch_update_page(b, &hints)
    }

    fn snp_launch_update_page(&mut self, b: &mut [u8], hints: &[Option<ContentsHint>]) -> Fw {
        let gctx = rd64(b, 0);
        let f = rd32(b, 8);
        let pa = rd64(b, 16);
        let perms_word = rd32(b, 24);
        if !page_aligned(gctx)
            || !page_aligned(pa)
            || f & !0x1F != 0
            || rd32(b, 12) != 0
            || perms_word & 0xFF != 0
            || rd32(b, 28) != 0
        {
            return Err(S::InvalidParam);
        }
        let huge = f & 1 != 0;
        let raw_type = ((f >> 1) & 7) as u8;
        let imi_page = f & 0x10 != 0;
        let perms = [
            (perms_word >> 8) as u8,
            (perms_word >> 16) as u8,
            (perms_word >> 24) as u8,
        ];
        self.require_snp()?;
        self.context(gctx)?;
        let e = self.rmp(pa);
        if e.state() != RmpState::PreGuest {
            return Err(S::InvalidPageState);
        }
        if e.page_size_2m != huge {
            return Err(S::InvalidPageSize);
        }
        if huge && !pa.is_multiple_of(2 << 20) {
            return Err(S::InvalidAddress);
        }
        if huge && matches!(raw_type, 2 | 5 | 6) {
            return Err(S::InvalidPageSize);
        }
        let ptype = SnpPageType::from_raw(raw_type).ok_or(S::InvalidParam)?;
        let g = self.context(gctx)?;
        if g.state != SnpGuestState::Launch {
            return Err(S::InvalidGuestState);
        }
        let asid = self.asid_of(Owner::Snp(gctx)).ok_or(S::Inactive)?;
        if e.asid != asid {
            return Err(S::InvalidPageOwner);
        }
        if g.imi_en && !imi_page {
            return Err(S::InvalidParam);
        }
        let count = if huge { 512 } else { 1 };
        // The firmware checks that every 4K entry of the range is in the same state.
        for i in 1..count {
            let x = self.rmp(pa + (i * PAGE_SIZE) as u64);
            if x.state() != RmpState::PreGuest || x.asid != asid {
                return Err(S::InvalidPageState);
            }
        }
        let secrets = if ptype == SnpPageType::Secrets {
            Some(self.secrets_page(g))
        } else {
            None
        };
        if ptype == SnpPageType::Cpuid {
            self.check_cpuid(pa)?;
        }
        let vek = g.vek.clone();
        let contents = self
            .mem
            .map_pages(pa, count, |i, page_pa, page| {
                let Ok(page4k) = <&mut [u8; PAGE_SIZE]>::try_from(page) else {
                    return [0u8; 48];
                };
                match ptype {
                    SnpPageType::Zero => page4k.fill(0),
                    SnpPageType::Secrets => {
                        if let Some(s) = &secrets {
                            page4k.copy_from_slice(&s[..]);
                        }
                    }
                    _ => {}
                }
                let c = match hints.get(i) {
                    Some(Some(h)) if h.page_type == ptype && h.bytes() == Some(&page4k[..]) => {
                        h.digest
                    }
                    _ => snp_page_contents(ptype, page4k),
                };
                mem_crypt(&vek, page_pa, page4k);
                c
            })
            .map_err(|_| S::InvalidAddress)?;
        let g = self.context_mut(gctx)?;
        for (i, c) in contents.iter().enumerate() {
            let gpa = e.gpa + (i * PAGE_SIZE) as u64;
            let mut info = PageInfo::new(&g.ld, c, ptype, gpa);
            info.imi_page = u8::from(imi_page);
            info.vmpl1_perms = perms[0];
            info.vmpl2_perms = perms[1];
            info.vmpl3_perms = perms[2];
            g.ld = info.digest();
            if imi_page {
                info.digest_cur = g.imd;
                g.imd = info.digest();
            }
        }
        for i in 0..count {
            let a = pa + (i * PAGE_SIZE) as u64;
            if let Some(x) = self.rmp.get_mut(&a) {
                x.validated = true;
                x.immutable = false;
                x.perms = perms;
                x.vmsa = ptype == SnpPageType::Vmsa;
            }
        }
        Ok(())
    }

    /// Builds the secrets page (version 3): not measured.
    fn secrets_page(&self, g: &SnpGuest) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(vec![0u8; PAGE_SIZE]);
        wr32(&mut p, 0, 3);
        wr32(&mut p, 4, u32::from(g.imi_en));
        wr32(&mut p, 8, self.cfg.fms);
        wr(&mut p, 0x10, &g.gosvw);
        for (i, k) in g.vmpck.iter().enumerate() {
            wr(&mut p, 0x20 + 0x20 * i, k);
        }
        p
    }

    /// CPUID page validation: count ≤ 64 and reserved fields zero, else
    /// INVALID_PARAM; entries against the policy, else the corrected page is
    /// written back unencrypted and INVALID_PARAM returned.
    fn check_cpuid(&self, pa: u64) -> Fw {
        let mut p = self.read(pa, PAGE_SIZE)?;
        let count = rd32(&p, 0) as usize;
        if count > 64 || rd32(&p, 4) != 0 || rd64(&p, 8) != 0 {
            return Err(S::InvalidParam);
        }
        let mut bad = false;
        for i in 0..count {
            let o = 0x10 + 48 * i;
            let (leaf, sub) = (rd32(&p, o), rd32(&p, o + 4));
            if let Some(m) = self
                .cfg
                .cpuid_policy
                .masks
                .iter()
                .find(|m| m.eax_in == leaf && m.ecx_in == sub)
            {
                for (r, allowed) in m.allowed.iter().enumerate() {
                    let off = o + 24 + 4 * r;
                    let v = rd32(&p, off);
                    if v & !allowed != 0 {
                        bad = true;
                        wr32(&mut p, off, v & allowed);
                    }
                }
            }
        }
        if bad {
            self.write(pa, &p)?;
            return Err(S::InvalidParam);
        }
        Ok(())
    }

    pub(super) fn snp_launch_finish(&mut self, b: &mut [u8]) -> Fw {
        let (gctx, id_pa, auth_pa, flags) = (rd64(b, 0), rd64(b, 8), rd64(b, 16), rd64(b, 24));
        if !page_aligned(gctx) || flags & !7 != 0 {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let g = self.context(gctx)?;
        if g.state != SnpGuestState::Launch || g.imi_en {
            return Err(S::InvalidGuestState);
        }
        if self.asid_of(Owner::Snp(gctx)).is_none() {
            return Err(S::Inactive);
        }
        let (id_en, auth_en, vcek_dis) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
        let mut id = None;
        let (mut id_digest, mut author_digest) = ([0u8; 48], [0u8; 48]);
        if id_en {
            let block =
                IdBlock::read_from_bytes(&self.read(id_pa, 0x60)?).map_err(|_| S::InvalidParam)?;
            let auth = IdAuth::read_from_bytes(&self.read(auth_pa, 0x1000)?)
                .map_err(|_| S::InvalidParam)?;
            if block.ld != g.ld {
                return Err(S::BadMeasurement);
            }
            if block.policy.get() != g.policy {
                return Err(S::PolicyFailure);
            }
            if auth.id_key_algo.get() != SIG_ALGO_ECDSA_P384_SHA384
                || (auth_en && auth.auth_key_algo.get() != SIG_ALGO_ECDSA_P384_SHA384)
            {
                return Err(S::InvalidParam);
            }
            if auth.id_key.curve.get() != CURVE_P384 {
                return Err(S::BadSignature);
            }
            let idk = decode_public_key(&auth.id_key).map_err(|_| S::BadSignature)?;
            verify_message(
                &idk,
                algo::ECDSA_SHA384,
                block.as_bytes(),
                &auth.id_block_sig,
            )
            .map_err(|_| S::BadSignature)?;
            id_digest = Sha384::digest(auth.id_key.as_bytes()).into();
            if auth_en {
                let ak = decode_public_key(&auth.author_key).map_err(|_| S::BadSignature)?;
                verify_message(
                    &ak,
                    algo::ECDSA_SHA384,
                    auth.id_key.as_bytes(),
                    &auth.id_key_sig,
                )
                .map_err(|_| S::BadSignature)?;
                author_digest = Sha384::digest(auth.author_key.as_bytes()).into();
            }
            id = Some(block);
        }
        let mut host_data = [0u8; 32];
        host_data.copy_from_slice(b.get(32..64).unwrap_or(&[0; 32]));
        self.asid_run(Owner::Snp(gctx));
        let g = self.context_mut(gctx)?;
        g.id_block = id;
        g.id_key_digest = id_digest;
        g.author_key_digest = author_digest;
        g.author_key_en = id_en && auth_en;
        g.vcek_dis = vcek_dis;
        g.host_data = host_data;
        g.state = SnpGuestState::Running;
        Ok(())
    }

    pub(super) fn snp_decommission(&mut self, b: &mut [u8]) -> Fw {
        let gctx = rd64(b, 0);
        if !page_aligned(gctx) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        self.context(gctx)?;
        self.release_asid(Owner::Snp(gctx));
        self.snp_guests.remove(&gctx);
        if let Some(e) = self.rmp.get_mut(&gctx) {
            e.vmsa = false;
        }
        Ok(())
    }

    pub(super) fn snp_guest_status(&mut self, b: &mut [u8]) -> Fw {
        let (gctx, out) = (rd64(b, 0), rd64(b, 8));
        if !page_aligned(gctx) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let g = self.context(gctx)?;
        let mut s = [0u8; 0x14];
        s[0..8].copy_from_slice(&g.policy.to_le_bytes());
        s[8..12].copy_from_slice(&self.asid_of(Owner::Snp(gctx)).unwrap_or(0).to_le_bytes());
        s[12] = g.state as u8;
        s[16] = u8::from(g.vcek_dis);
        self.write(out, &s)
    }

    /// SNP_DBG_DECRYPT / SNP_DBG_ENCRYPT on one 4 KiB page. Checks: reserved
    /// address bits, platform, context, DEBUG policy bit, then the guest page
    /// must belong to this guest's ASID.
    pub(super) fn snp_dbg(&mut self, b: &mut [u8], encrypt: bool) -> Fw {
        let (gctx, src, dst) = (rd64(b, 0), rd64(b, 8), rd64(b, 16));
        if !page_aligned(gctx) || !page_aligned(src) || !page_aligned(dst) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let g = self.context(gctx)?;
        if g.policy & POLICY_DEBUG == 0 {
            return Err(S::PolicyFailure);
        }
        let vek = g.vek.clone();
        let asid = self.asid_of(Owner::Snp(gctx)).ok_or(S::Inactive)?;
        let guest_pa = if encrypt { dst } else { src };
        let e = self.rmp(guest_pa);
        if !matches!(e.state(), RmpState::GuestValid | RmpState::GuestInvalid) {
            return Err(S::InvalidPageState);
        }
        if e.asid != asid {
            return Err(S::InvalidPageOwner);
        }
        let mut data = Zeroizing::new(self.read(src, PAGE_SIZE)?);
        mem_crypt(&vek, guest_pa, &mut data);
        self.write(dst, &data)
    }

    pub(super) fn snp_page_reclaim(&mut self, b: &mut [u8]) -> Fw {
        let raw = rd64(b, 0);
        let huge = raw & 1 != 0;
        let pa = raw & !0xFFF;
        if raw & 0xFFE != 0 || (huge && !pa.is_multiple_of(2 << 20)) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let e = self.rmp(pa);
        if e.page_size_2m != huge {
            return Err(S::InvalidPageSize);
        }
        if matches!(
            e.state(),
            RmpState::Hypervisor | RmpState::HvFixed | RmpState::Context
        ) {
            return Err(S::InvalidPageState);
        }
        let n = if huge { 512 } else { 1 };
        for i in 0..n {
            let a = pa + (i * PAGE_SIZE) as u64;
            self.rmp.insert(
                a,
                RmpEntry {
                    assigned: true,
                    page_size_2m: huge,
                    ..Default::default()
                },
            );
        }
        Ok(())
    }

    /// SNP_GUEST_REQUEST, following AMD firmware 1.55: reserved address bits
    /// (INVALID_PARAM), platform, context, guest RUNNING (INVALID_GUEST_STATE);
    /// the request header must not cross its page, HDR_VERSION 1, HDR_SIZE
    /// 0x60, ALGO 1, MSG_SIZE a non-zero multiple of 16 within the page, VMPCK
    /// 0..=3 (INVALID_PARAM); the AES-256-GCM tag must verify (INVALID_PARAM
    /// in this model); MSG_SEQNO must be the VMPCK's message count + 1
    /// (AEAD_OFLOW); MSG_VERSION 1 and MSG_TYPE MSG_REPORT_REQ (INVALID_PARAM;
    /// other message types are not modelled). Report-level errors go into the
    /// response STATUS: reserved fields (INVALID_PARAM), KEY_SEL (INVALID_KEY),
    /// VMPL below the VMPCK index (INVALID_PARAM). The response is encrypted
    /// under the same VMPCK with MSG_SEQNO + 1 and the count advances by 2.
    pub(super) fn snp_guest_request(&mut self, b: &mut [u8]) -> Fw {
        use crate::owner::guest_msg::{
            AEAD_AES_256_GCM, MSG_HDR_LEN, MSG_REPORT_REQ, MSG_REPORT_RSP, MsgReportReq,
            SnpGuestMsgHdr, open, seal,
        };
        let (gctx, req_pa, res_pa) = (rd64(b, 0), rd64(b, 8), rd64(b, 16));
        if !page_aligned(gctx) {
            return Err(S::InvalidParam);
        }
        self.require_snp()?;
        let g = self.context(gctx)?;
        if g.state != SnpGuestState::Running {
            return Err(S::InvalidGuestState);
        }
        let page_off = (req_pa & 0xFFF) as usize;
        if page_off > PAGE_SIZE - MSG_HDR_LEN {
            return Err(S::InvalidParam);
        }
        let (hdr, _) = SnpGuestMsgHdr::read_from_prefix(&self.read(req_pa, MSG_HDR_LEN)?)
            .map_err(|_| S::InvalidParam)?;
        let msg_sz = hdr.msg_sz.get() as usize;
        if hdr.hdr_version != 1
            || hdr.hdr_sz.get() as usize != MSG_HDR_LEN
            || hdr.algo != AEAD_AES_256_GCM
            || msg_sz == 0
            || !msg_sz.is_multiple_of(16)
            || page_off + MSG_HDR_LEN + msg_sz > PAGE_SIZE
        {
            return Err(S::InvalidParam);
        }
        let idx = hdr.msg_vmpck as usize;
        let key = g
            .vmpck
            .get(idx)
            .copied()
            .map(Zeroizing::new)
            .ok_or(S::InvalidParam)?;
        let msg = self.read(req_pa, MSG_HDR_LEN + msg_sz)?;
        let (hdr, payload) = open(&key, &msg).map_err(|_| S::InvalidParam)?;
        let payload = Zeroizing::new(payload);
        let count = g.msg_count.get(idx).copied().unwrap_or(u64::MAX - 1);
        if count == u64::MAX - 1 || hdr.msg_seqno.get() != count.wrapping_add(1) {
            return Err(S::AeadOflow);
        }
        if hdr.msg_version != 1 || hdr.msg_type != MSG_REPORT_REQ {
            return Err(S::InvalidParam);
        }
        let mut rsp = Zeroizing::new(vec![0u8; 0x20 + crate::report::REPORT_LEN]);
        wr32(&mut rsp, 4, crate::report::REPORT_LEN as u32);
        let status = match MsgReportReq::read_from_prefix(&payload) {
            Ok((req, _)) if req.rsvd.iter().all(|&x| x == 0) && req.key_sel.get() & !3 == 0 => {
                let key_sel = req.key_sel.get();
                // No VLEK is ever loaded in this model.
                if key_sel == 3 || key_sel == 2 || g.vcek_dis {
                    S::InvalidKey
                } else if req.vmpl.get() < idx as u32 {
                    S::InvalidParam
                } else {
                    let r = self.build_report(gctx, &req.report_data, req.vmpl.get())?;
                    wr(&mut rsp, 0x20, r.as_bytes());
                    S::Success
                }
            }
            _ => S::InvalidParam,
        };
        wr32(&mut rsp, 0, status.raw());
        if (res_pa & 0xFFF) as usize + MSG_HDR_LEN + rsp.len() > PAGE_SIZE {
            return Err(S::InvalidParam);
        }
        let sealed =
            seal(&key, idx as u8, count + 2, MSG_REPORT_RSP, &rsp).map_err(|_| S::InvalidParam)?;
        if let Some(c) = self.context_mut(gctx)?.msg_count.get_mut(idx) {
            *c = count + 2;
        }
        self.write(res_pa, &sealed)
    }

    /// The report for a running guest, signed by the VCEK (MASK_CHIP_KEY is
    /// never set in this model, and no VLEK is loaded).
    fn build_report(&self, gctx: u64, report_data: &[u8; 64], vmpl: u32) -> Fw<AttestationReport> {
        let g = self.context(gctx)?;
        if g.state != SnpGuestState::Running {
            return Err(S::InvalidGuestState);
        }
        let mut r = AttestationReport::new_zeroed();
        r.version = U32::new(2);
        if let Some(id) = &g.id_block {
            r.guest_svn = id.guest_svn;
            r.family_id = id.family_id;
            r.image_id = id.image_id;
        }
        r.policy = U64::new(g.policy);
        r.vmpl = U32::new(vmpl);
        r.signature_algo = U32::new(SIG_ALGO_ECDSA_P384_SHA384);
        r.current_tcb = U64::new(self.cfg.tcb.0);
        r.platform_info = U64::new(u64::from(self.cfg.smt_enabled));
        // SIGNING_KEY (bits 4:2) = 0: VCEK.
        r.key_info = U32::new(u32::from(g.author_key_en));
        r.report_data = *report_data;
        r.measurement = g.ld;
        r.host_data = g.host_data;
        r.id_key_digest = g.id_key_digest;
        r.author_key_digest = g.author_key_digest;
        r.report_id = g.report_id;
        r.report_id_ma = g.report_id_ma;
        r.reported_tcb = U64::new(self.cfg.tcb.0);
        r.chip_id = self.id.chip_id;
        r.committed_tcb = U64::new(self.cfg.tcb.0);
        r.current_build = self.cfg.build;
        r.current_minor = self.cfg.api_minor;
        r.current_major = self.cfg.api_major;
        r.committed_build = self.cfg.build;
        r.committed_minor = self.cfg.api_minor;
        r.committed_major = self.cfg.api_major;
        r.launch_tcb = U64::new(g.launch_tcb);
        r.signature = sign_message(&self.id.vcek, algo::ECDSA_SHA384, r.signed_bytes())
            .map_err(|_| S::HwsevRetPlatform)?;
        Ok(r)
    }
}

impl SimFirmware {
    /// The attestation report a running SNP guest receives for an
    /// `MSG_REPORT_REQ` with KEY_SEL 0 sent under VMPCK0, with `report_data` at
    /// `vmpl`, signed by the simulated VCEK: the report path of
    /// SNP_GUEST_REQUEST without the AES-256-GCM message layer. A guest
    /// launched with VCEK_DISABLED gets INVALID_KEY (no VLEK is loaded).
    pub fn guest_report(
        &self,
        gctx: u64,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> Result<AttestationReport, S> {
        let st = self.lock();
        st.require_snp()?;
        if st.context(gctx)?.vcek_dis {
            return Err(S::InvalidKey);
        }
        st.build_report(gctx, report_data, vmpl)
    }

    /// What the guest of the context at `gctx` reads from its own private page
    /// at `pa` (within one 4 KiB page): the memory controller decrypts with the
    /// guest's VEK for the accesses of the owning ASID, whatever the DEBUG
    /// policy bit says. The page must be a validated guest page of this ASID
    /// (INVALID_PAGE_STATE / INVALID_PAGE_OWNER otherwise, INACTIVE without an
    /// ASID).
    pub fn guest_read_private(&self, gctx: u64, pa: u64, buf: &mut [u8]) -> Result<(), S> {
        let st = self.lock();
        let g = st.context(gctx)?;
        let asid = st.asid_of(Owner::Snp(gctx)).ok_or(S::Inactive)?;
        let e = st.rmp(pa);
        if e.state() != RmpState::GuestValid {
            return Err(S::InvalidPageState);
        }
        if e.asid != asid {
            return Err(S::InvalidPageOwner);
        }
        st.read_decrypted(&g.vek, pa, buf)
    }

    /// The SNP guest state of the context at `gctx`, if it is one.
    pub fn snp_guest_state(&self, gctx: u64) -> Option<SnpGuestState> {
        self.lock().snp_guests.get(&gctx).map(|g| g.state)
    }

    /// The current SNP launch digest (GCTX.LD) of the context at `gctx`.
    pub fn snp_launch_digest(&self, gctx: u64) -> Option<[u8; 48]> {
        self.lock().snp_guests.get(&gctx).map(|g| g.ld)
    }

    /// The RMP entry of the page at `pa`.
    pub fn rmp_entry(&self, pa: u64) -> RmpEntry {
        self.lock().rmp(pa)
    }

    fn rmp_range(
        &self,
        pa: u64,
        huge: bool,
        f: impl Fn(u64, &RmpEntry) -> Result<RmpEntry, RmpError>,
    ) -> Result<(), RmpError> {
        let size = if huge { 2 << 20 } else { PAGE_SIZE as u64 };
        if !pa.is_multiple_of(size) {
            return Err(RmpError::Unaligned);
        }
        let mut st = self.lock();
        let n = size / PAGE_SIZE as u64;
        let mut new = Vec::with_capacity(n as usize);
        for i in 0..n {
            let a = pa + i * PAGE_SIZE as u64;
            new.push((a, f(i * PAGE_SIZE as u64, &st.rmp(a))?));
        }
        for (a, e) in new {
            if e == RmpEntry::default() {
                st.rmp.remove(&a);
            } else {
                st.rmp.insert(a, e);
            }
        }
        Ok(())
    }

    /// RMPUPDATE model: makes a hypervisor page firmware-owned (what the kernel
    /// does for a guest context page before SNP_GCTX_CREATE).
    pub fn rmp_make_firmware(&self, pa: u64) -> Result<(), RmpError> {
        self.rmp_range(pa, false, |_, e| {
            if e.state() != RmpState::Hypervisor {
                return Err(RmpError::WrongState);
            }
            Ok(RmpEntry {
                assigned: true,
                immutable: true,
                ..Default::default()
            })
        })
    }

    /// Adds content hints: the host-physical address of the page each is for, and the
    /// hint. Each hint is consumed by the next `SNP_LAUNCH_UPDATE` of its page, whatever
    /// its outcome, or dropped by [`remove_contents_hint`](Self::remove_contents_hint).
    pub fn add_contents_hints(&self, hints: impl IntoIterator<Item = (u64, ContentsHint)>) {
        self.lock().contents_hints.extend(hints);
    }

    /// Drops the pending content hint of the page at `pa`, if any: for a caller whose
    /// command did not reach the firmware.
    pub fn remove_contents_hint(&self, pa: u64) {
        self.lock().contents_hints.remove(&pa);
    }

    /// How many content hints are pending (added, not yet consumed or removed).
    pub fn contents_hints_pending(&self) -> usize {
        self.lock().contents_hints.len()
    }

    /// RMPUPDATE model: assigns the page(s) at `pa` to `asid` at `gpa`,
    /// immutable (the Pre-Guest state SNP_LAUNCH_UPDATE needs), like KVM's
    /// `rmp_make_private(pfn, gpa, level, asid, true)`.
    pub fn rmp_make_private(
        &self,
        pa: u64,
        gpa: u64,
        asid: u32,
        huge: bool,
    ) -> Result<(), RmpError> {
        if huge && !gpa.is_multiple_of(2 << 20) {
            return Err(RmpError::Unaligned);
        }
        self.rmp_range(pa, huge, |off, e| {
            if e.state() != RmpState::Hypervisor {
                return Err(RmpError::WrongState);
            }
            // Each 4K entry records its own GPA.
            Ok(RmpEntry {
                assigned: true,
                page_size_2m: huge,
                immutable: true,
                gpa: gpa + off,
                asid,
                ..Default::default()
            })
        })
    }

    /// RMPUPDATE model: returns the page(s) to the hypervisor. Immutable
    /// entries (firmware, context, pre-guest pages) must be reclaimed with
    /// SNP_PAGE_RECLAIM first.
    pub fn rmp_make_shared(&self, pa: u64, huge: bool) -> Result<(), RmpError> {
        self.rmp_range(pa, huge, |_, e| {
            if e.immutable {
                Err(RmpError::WrongState)
            } else {
                Ok(RmpEntry::default())
            }
        })
    }

    /// Whether any ASID is dirty (a DF_FLUSH is pending).
    pub fn dirty_asids(&self) -> Vec<u32> {
        let st = self.lock();
        st.asids
            .iter()
            .enumerate()
            .filter(|(_, a)| a.0 == AsidState::Dirty)
            .map(|(i, _)| i as u32)
            .collect()
    }
}
