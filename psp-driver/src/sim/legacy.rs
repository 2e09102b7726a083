//! Legacy SEV / SEV-ES guest commands (facts §1.4–§1.8, §6.2, §6.3).

use std::sync::Arc;

use p384::PublicKey;
use zerocopy::FromBytes;
use zeroize::Zeroizing;

use super::{Fw, Owner, PlatformState, State, mem_crypt, rd32, rd64, wr, wr32};
use crate::SevRetCode as S;
use crate::digest::{SevLaunchDigest, launch_measure_message};
use crate::owner::cert::{SEV_CERT_LEN, SevCert, algo, usage};
use crate::owner::crypto::{hmac_sha256, hmac_sha256_verify};
use crate::owner::session::{SessionBuf, TransportKeys, WrapKeys, shared_secret, unwrap_session};

/// Legacy guest states (GSTATE), as GUEST_STATUS reports them.
pub use kvm_coco_uapi::SevGuestState;

const POLICY_NODBG: u32 = 1 << 0;
const POLICY_NOKS: u32 = 1 << 1;
const POLICY_ES: u32 = 1 << 2;
const POLICY_NOSEND: u32 = 1 << 3;
const POLICY_DOMAIN: u32 = 1 << 4;
const POLICY_SEV: u32 = 1 << 5;
/// SEV_CHANNEL_CTX_DATA, the first byte of a SEND/RECEIVE_UPDATE packet MAC.
const CTX_DATA: u8 = 0x02;
const POLICY_RESERVED: u32 = 0xFFC0;
const MAX_HANDLE: u32 = 1024;
/// Largest LAUNCH_SECRET payload the firmware's scratch buffer takes (model value).
const SCRATCH_SIZE: u32 = 0x4000;
/// Length of the legacy ATTESTATION report.
const SEV_REPORT_LEN: usize = 0xD0;

pub(crate) struct SevGuest {
    policy: u32,
    state: SevGuestState,
    vek: Arc<Zeroizing<[u8; 16]>>,
    ld: SevLaunchDigest,
    ld_final: [u8; 32],
    keys: Option<TransportKeys>,
    measure: Option<[u8; 32]>,
}

impl State {
    fn sev_guest(&self, handle: u32) -> Fw<&SevGuest> {
        self.sev_guests.get(&handle).ok_or(S::InvalidGuest)
    }

    fn sev_guest_mut(&mut self, handle: u32) -> Fw<&mut SevGuest> {
        self.sev_guests.get_mut(&handle).ok_or(S::InvalidGuest)
    }

    fn require(&self, states: &[PlatformState]) -> Fw {
        if states.contains(&self.sev_state) {
            Ok(())
        } else {
            Err(S::InvalidPlatformState)
        }
    }

    fn policy_ok(&self, policy: u32) -> bool {
        let (maj, min) = ((policy >> 16) as u8, (policy >> 24) as u8);
        let fw_ok =
            self.cfg.api_major > maj || (self.cfg.api_major == maj && self.cfg.api_minor >= min);
        fw_ok && policy & POLICY_RESERVED == 0
    }

    pub(super) fn launch_start(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Init, PlatformState::Working])?;
        let (handle, policy) = (rd32(b, 0), rd32(b, 4));
        let (cert_pa, cert_len) = (rd64(b, 8), rd32(b, 16));
        let (sess_pa, sess_len) = (rd64(b, 24), rd32(b, 32));
        let mut keys = None;
        if cert_pa != 0 {
            if sess_len != 0x80 || cert_len as usize != SEV_CERT_LEN {
                return Err(S::InvalidLen);
            }
            let peer = peer_pdh(&self.read_cert(cert_pa)?)?;
            let session = SessionBuf::read_from_bytes(&self.read(sess_pa, 0x80)?)
                .map_err(|_| S::InvalidLen)?;
            let z = shared_secret(&self.id.pdh, &peer);
            let wrap = WrapKeys::derive(&z[..], &session.nonce);
            keys = Some(unwrap_session(&wrap, &session, policy).map_err(|_| S::BadMeasurement)?);
            // The firmware checks the policy's API version and reserved bits
            // together with its MAC, so only when a session is given.
            if !self.policy_ok(policy) {
                return Err(S::PolicyFailure);
            }
        }
        let new = self.new_sev_guest(handle, policy, keys, SevGuestState::Lupdate)?;
        wr32(b, 0, new);
        Ok(())
    }

    /// The common end of LAUNCH_START and RECEIVE_START: shares the VEK of the guest
    /// `shared` (0: a fresh key) if both policies are equal and allow key sharing, takes
    /// the lowest free handle, refuses an SEV-ES policy without SEV-ES initialized, and
    /// adds the guest in `state`; the platform becomes WORKING. Returns the new handle.
    fn new_sev_guest(
        &mut self,
        shared: u32,
        policy: u32,
        keys: Option<TransportKeys>,
        state: SevGuestState,
    ) -> Fw<u32> {
        let vek = if shared != 0 {
            let other = self.sev_guest(shared)?;
            if other.policy != policy || policy & POLICY_NOKS != 0 {
                return Err(S::PolicyFailure);
            }
            Some(other.vek.clone())
        } else {
            None
        };
        let new = (1..=MAX_HANDLE)
            .find(|h| !self.sev_guests.contains_key(h))
            .ok_or(S::ResourceLimit)?;
        if policy & POLICY_ES != 0 && !self.es_init {
            return Err(S::Unsupported);
        }
        let vek = match vek {
            Some(v) => v,
            None => self.draw_key(),
        };
        self.sev_guests.insert(
            new,
            SevGuest {
                policy,
                state,
                vek,
                ld: SevLaunchDigest::new(),
                ld_final: [0; 32],
                keys,
                measure: None,
            },
        );
        self.sev_state = PlatformState::Working;
        Ok(new)
    }

    pub(super) fn launch_update(&mut self, b: &mut [u8], vmsa: bool) -> Fw {
        // LAUNCH_UPDATE_VMSA checks its length before anything else.
        if vmsa && rd32(b, 16) != 4096 {
            return Err(S::InvalidLen);
        }
        self.require(&[PlatformState::Working])?;
        let (handle, pa, len) = (rd32(b, 0), rd64(b, 8), rd32(b, 16));
        let g = self.sev_guest(handle)?;
        if g.state != SevGuestState::Lupdate {
            return Err(S::InvalidGuestState);
        }
        if vmsa && g.policy & POLICY_ES == 0 {
            return Err(S::Unsupported);
        }
        if self.asid_of(Owner::Sev(handle)).is_none() {
            return Err(S::Inactive);
        }
        if !pa.is_multiple_of(16) {
            return Err(S::InvalidAddress);
        }
        if (vmsa && len != 4096) || len == 0 || !len.is_multiple_of(16) {
            return Err(S::InvalidLen);
        }
        let mut data = Zeroizing::new(self.read(pa, len as usize)?);
        let g = self.sev_guest_mut(handle)?;
        g.ld.update(&data);
        let vek = g.vek.clone();
        mem_crypt(&vek, pa, &mut data);
        self.write(pa, &data)
    }

    pub(super) fn launch_measure(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let (handle, pa, len) = (rd32(b, 0), rd64(b, 8), rd32(b, 16));
        let g = self.sev_guest(handle)?;
        if g.state != SevGuestState::Lupdate {
            return Err(S::InvalidGuestState);
        }
        wr32(b, 16, 48);
        if len < 48 {
            return Err(S::InvalidLen);
        }
        let mnonce: [u8; 16] = self.draw();
        let (maj, min, build) = (self.cfg.api_major, self.cfg.api_minor, self.cfg.build);
        let g = self.sev_guest_mut(handle)?;
        let ld = core::mem::take(&mut g.ld).finalize();
        let tik = g.keys.as_ref().map_or([0u8; 16], |k| k.tik);
        let msg = launch_measure_message(maj, min, build, g.policy, &ld, &mnonce);
        let measure = hmac_sha256(&tik, &[&msg]);
        g.ld_final = ld;
        g.measure = Some(measure);
        g.state = SevGuestState::Lsecret;
        let mut out = [0u8; 48];
        out[..32].copy_from_slice(&measure);
        out[32..].copy_from_slice(&mnonce);
        self.write(pa, &out)
    }

    pub(super) fn launch_secret(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        let (hdr_pa, hdr_len) = (rd64(b, 8), rd32(b, 16));
        let (guest_pa, guest_len) = (rd64(b, 24), rd32(b, 32));
        let (trans_pa, trans_len) = (rd64(b, 40), rd32(b, 48));
        let g = self.sev_guest(handle)?;
        if !guest_pa.is_multiple_of(16) {
            return Err(S::InvalidAddress);
        }
        if hdr_len != 52
            || guest_len == 0
            || !guest_len.is_multiple_of(16)
            || guest_len > SCRATCH_SIZE
            || guest_len != trans_len
        {
            return Err(S::InvalidLen);
        }
        if g.state != SevGuestState::Lsecret {
            return Err(S::InvalidGuestState);
        }
        if self.asid_of(Owner::Sev(handle)).is_none() {
            return Err(S::Inactive);
        }
        let hdr = self.read(hdr_pa, 52)?;
        let ct = self.read(trans_pa, trans_len as usize)?;
        let g = self.sev_guest(handle)?;
        let (tik, tek) = g
            .keys
            .as_ref()
            .map_or(([0u8; 16], [0u8; 16]), |k| (k.tik, k.tek));
        let measure = g.measure.unwrap_or([0; 32]);
        let (flags, iv, mac) = (&hdr[0..4], &hdr[4..20], &hdr[20..52]);
        let ok = hmac_sha256_verify(
            &tik,
            &[
                &[0x01],
                flags,
                iv,
                &guest_len.to_le_bytes(),
                &trans_len.to_le_bytes(),
                &ct,
                &measure,
            ],
            mac,
        );
        if !ok {
            return Err(S::BadMeasurement);
        }
        if rd32(flags, 0) & 1 != 0 {
            return Err(S::Unsupported);
        }
        let mut pt = Zeroizing::new(ct);
        let mut ivb = [0u8; 16];
        ivb.copy_from_slice(iv);
        crate::owner::crypto::aes128_ctr(&tek, &ivb, &mut pt);
        let vek = g.vek.clone();
        mem_crypt(&vek, guest_pa, &mut pt);
        self.write(guest_pa, &pt)
    }

    pub(super) fn launch_finish(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        let g = self.sev_guest(handle)?;
        if g.state != SevGuestState::Lsecret {
            return Err(S::InvalidGuestState);
        }
        self.asid_run(Owner::Sev(handle));
        let g = self.sev_guest_mut(handle)?;
        g.keys = None;
        g.state = SevGuestState::Running;
        Ok(())
    }

    pub(super) fn attestation(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let (handle, pa, len) = (rd32(b, 0), rd64(b, 8), rd32(b, 32));
        let g = self.sev_guest(handle)?;
        if !matches!(
            g.state,
            SevGuestState::Lsecret
                | SevGuestState::Running
                | SevGuestState::Supdate
                | SevGuestState::Sent
        ) {
            return Err(S::InvalidGuestState);
        }
        wr32(b, 32, SEV_REPORT_LEN as u32);
        if (len as usize) < SEV_REPORT_LEN {
            return Err(S::InvalidLen);
        }
        let mut r = [0u8; SEV_REPORT_LEN];
        r[0..16].copy_from_slice(b.get(16..32).unwrap_or(&[0u8; 16]));
        r[0x10..0x30].copy_from_slice(&g.ld_final);
        r[0x30..0x34].copy_from_slice(&g.policy.to_le_bytes());
        r[0x34..0x38].copy_from_slice(&usage::PEK.to_le_bytes());
        r[0x38..0x3C].copy_from_slice(&algo::ECDSA_SHA256.to_le_bytes());
        let sig = crate::owner::cert::sign_message(&self.id.pek, algo::ECDSA_SHA256, &r[..0x34])
            .map_err(|_| S::HwsevRetPlatform)?;
        r[0x40..0x88].copy_from_slice(&sig.r);
        r[0x88..0xD0].copy_from_slice(&sig.s);
        self.write(pa, &r)
    }

    pub(super) fn activate(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let (handle, asid) = (rd32(b, 0), rd32(b, 4));
        let g = self.sev_guest(handle)?;
        let (state, es) = (g.state, g.policy & POLICY_ES != 0);
        self.asid_precheck(asid, self.asid_of(Owner::Sev(handle)).is_some())?;
        if state == SevGuestState::Sent {
            return Err(S::InvalidGuestState);
        }
        let running = matches!(state, SevGuestState::Running | SevGuestState::Supdate);
        self.asid_bind(asid, Owner::Sev(handle), es, running)
    }

    pub(super) fn deactivate(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        self.sev_guest(handle)?;
        if !self.release_asid(Owner::Sev(handle)) {
            return Err(S::Inactive);
        }
        Ok(())
    }

    pub(super) fn decommission(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        self.sev_guest(handle)?;
        if self.asid_of(Owner::Sev(handle)).is_some() {
            return Err(S::Active);
        }
        self.sev_guests.remove(&handle);
        if self.sev_guests.is_empty() {
            self.sev_state = PlatformState::Init;
        }
        Ok(())
    }

    pub(super) fn guest_status(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Init, PlatformState::Working])?;
        let handle = rd32(b, 0);
        // An unknown handle only gets state 0 (the other fields are left alone).
        let Some(g) = self.sev_guests.get(&handle) else {
            wr(b, 12, &[0]);
            return Ok(());
        };
        let (policy, state) = (g.policy, g.state as u8);
        let asid = self.asid_of(Owner::Sev(handle)).unwrap_or(0);
        wr32(b, 4, policy);
        wr32(b, 8, asid);
        wr(b, 12, &[state]);
        Ok(())
    }

    /// DBG_DECRYPT / DBG_ENCRYPT, in AMD firmware 1.55's order: platform
    /// WORKING, 16-byte aligned addresses (INVALID_ADDRESS), 16-byte aligned
    /// length (INVALID_LENGTH; 0 passes and copies nothing), handle, NODBG
    /// (POLICY_FAILURE), then the guest must hold an ASID (INACTIVE).
    pub(super) fn dbg(&mut self, b: &mut [u8], encrypt: bool) -> Fw {
        self.require(&[PlatformState::Working])?;
        let (handle, src, dst, len) = (rd32(b, 0), rd64(b, 8), rd64(b, 16), rd32(b, 24));
        if !src.is_multiple_of(16) || !dst.is_multiple_of(16) {
            return Err(S::InvalidAddress);
        }
        if !len.is_multiple_of(16) {
            return Err(S::InvalidLen);
        }
        let g = self.sev_guest(handle)?;
        if g.policy & POLICY_NODBG != 0 {
            return Err(S::PolicyFailure);
        }
        let vek = g.vek.clone();
        if self.asid_of(Owner::Sev(handle)).is_none() {
            return Err(S::Inactive);
        }
        let mut data = Zeroizing::new(self.read(src, len as usize)?);
        if encrypt {
            mem_crypt(&vek, dst, &mut data);
        } else {
            mem_crypt(&vek, src, &mut data);
        }
        self.write(dst, &data)
    }
}

/// Validates the body of a peer DH certificate the way the channel does:
/// version 1, usage PDH, algorithm ECDH-SHA256, a P-384 point.
fn peer_pdh(cert: &SevCert) -> Fw<PublicKey> {
    if cert.version.get() != 1
        || cert.pub_key_usage.get() != usage::PDH
        || cert.pub_key_algo.get() != algo::ECDH_SHA256
    {
        return Err(S::InvalidCertificate);
    }
    Ok(PublicKey::from(
        cert.public_key().map_err(|_| S::InvalidCertificate)?,
    ))
}

/// The packet MAC of SEND/RECEIVE_UPDATE: HMAC-SHA256(TIK, ctx ‖ flags ‖ IV ‖
/// uncompressed_size ‖ trans_size ‖ ciphertext), the AAD laid out as the
/// firmware's `send_receive_update_aad_t`.
fn packet_mac(tik: &[u8; 16], flags: u32, iv: &[u8; 16], len: u32, ct: &[u8]) -> [u8; 32] {
    hmac_sha256(
        tik,
        &[
            &[CTX_DATA],
            &flags.to_le_bytes(),
            iv,
            &len.to_le_bytes(),
            &len.to_le_bytes(),
            ct,
        ],
    )
}

impl State {
    fn read_cert(&self, pa: u64) -> Fw<SevCert> {
        SevCert::read_from_bytes(&self.read(pa, SEV_CERT_LEN)?).map_err(|_| S::InvalidCertificate)
    }

    /// SEND_START (migration out). Order as AMD firmware 1.55: platform,
    /// handle, session length, RUNNING, NOSEND, the SEV-policy platform chain
    /// (CEK → PEK → PDH; the AMD ASK/ARK part is not modelled), the DOMAIN
    /// chain (OCA → PEK → PDH, same OCA), the target PDH, then the channel.
    pub(super) fn send_start(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        let g = self.sev_guest(handle)?;
        if rd32(b, 64) != 0x80 {
            wr32(b, 64, 0x80);
            return Err(S::InvalidLen);
        }
        if g.state != SevGuestState::Running {
            return Err(S::InvalidGuestState);
        }
        let policy = g.policy;
        if policy & POLICY_NOSEND != 0 {
            return Err(S::PolicyFailure);
        }
        let (pdh_pa, pdh_len) = (rd64(b, 8), rd32(b, 16) as usize);
        let (plat_pa, plat_len) = (rd64(b, 24), rd32(b, 32) as usize);
        if policy & (POLICY_SEV | POLICY_DOMAIN) != 0 {
            if plat_len != 3 * SEV_CERT_LEN || pdh_len != SEV_CERT_LEN {
                return Err(S::InvalidLen);
            }
            let chain = self.read(plat_pa, 3 * SEV_CERT_LEN)?;
            let cert = |i: usize| {
                chain
                    .get(i * SEV_CERT_LEN..(i + 1) * SEV_CERT_LEN)
                    .and_then(|c| SevCert::read_from_bytes(c).ok())
                    .ok_or(S::InvalidCertificate)
            };
            let (pek, oca, cek) = (cert(0)?, cert(1)?, cert(2)?);
            let pdh = self.read_cert(pdh_pa)?;
            let key = |c: &SevCert| c.public_key().map_err(|_| S::InvalidCertificate);
            if policy & POLICY_SEV != 0 {
                pek.verify_signed_by(&key(&cek)?, usage::CEK)
                    .map_err(|_| S::InvalidCertificate)?;
                pdh.verify_signed_by(&key(&pek)?, usage::PEK)
                    .map_err(|_| S::InvalidCertificate)?;
                let (maj, min) = ((policy >> 16) as u8, (policy >> 24) as u8);
                if pek.api_major < maj || (pek.api_major == maj && pek.api_minor < min) {
                    return Err(S::PolicyFailure);
                }
            }
            if policy & POLICY_DOMAIN != 0 {
                oca.verify_signed_by(&key(&oca)?, usage::OCA)
                    .map_err(|_| S::InvalidCertificate)?;
                pek.verify_signed_by(&key(&oca)?, usage::OCA)
                    .map_err(|_| S::InvalidCertificate)?;
                pdh.verify_signed_by(&key(&pek)?, usage::PEK)
                    .map_err(|_| S::InvalidCertificate)?;
                if oca != self.id.oca_cert {
                    return Err(S::PolicyFailure);
                }
            }
        } else if pdh_len != SEV_CERT_LEN {
            return Err(S::InvalidLen);
        }
        let peer = peer_pdh(&self.read_cert(pdh_pa)?)?;
        let keys = TransportKeys {
            tek: self.draw(),
            tik: self.draw(),
        };
        let nonce: [u8; 16] = self.draw();
        let iv: [u8; 16] = self.draw();
        let z = shared_secret(&self.id.pdh, &peer);
        let wrap = WrapKeys::derive(&z[..], &nonce);
        let session = crate::owner::session::wrap_session(&wrap, &keys, nonce, iv, policy);
        self.write(rd64(b, 56), zerocopy::IntoBytes::as_bytes(&session))?;
        wr32(b, 4, policy);
        let g = self.sev_guest_mut(handle)?;
        g.keys = Some(keys);
        g.state = SevGuestState::Supdate;
        Ok(())
    }

    /// SEND_UPDATE_DATA / SEND_UPDATE_VMSA (52-byte transport buffer).
    pub(super) fn send_update(&mut self, b: &mut [u8], vmsa: bool) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        let (hdr_pa, hdr_len) = (rd64(b, 8), rd32(b, 16));
        let (guest_pa, guest_len) = (rd64(b, 24), rd32(b, 32));
        let (trans_pa, trans_len) = (rd64(b, 40), rd32(b, 48));
        if hdr_len < 52 {
            wr32(b, 16, 52);
            return Err(S::InvalidLen);
        }
        let g = self.sev_guest(handle)?;
        if g.state != SevGuestState::Supdate {
            return Err(S::InvalidGuestState);
        }
        if vmsa && g.policy & POLICY_ES == 0 {
            return Err(S::Unsupported);
        }
        if self.asid_of(Owner::Sev(handle)).is_none() {
            return Err(S::Inactive);
        }
        if guest_len == 0
            || guest_len > SCRATCH_SIZE
            || !guest_len.is_multiple_of(16)
            || trans_len == 0
            || trans_len < guest_len
        {
            return Err(S::InvalidLen);
        }
        if !guest_pa.is_multiple_of(16) {
            return Err(S::InvalidAddress);
        }
        let vek = g.vek.clone();
        let (tek, tik) = g
            .keys
            .as_ref()
            .map_or(([0u8; 16], [0u8; 16]), |k| (k.tek, k.tik));
        let mut data = Zeroizing::new(self.read(guest_pa, guest_len as usize)?);
        mem_crypt(&vek, guest_pa, &mut data);
        let iv: [u8; 16] = self.draw();
        crate::owner::crypto::aes128_ctr(&tek, &iv, &mut data);
        let mac = packet_mac(&tik, 0, &iv, guest_len, &data);
        self.write(trans_pa, &data)?;
        let mut hdr = [0u8; 52];
        hdr[4..20].copy_from_slice(&iv);
        hdr[20..52].copy_from_slice(&mac);
        self.write(hdr_pa, &hdr)?;
        wr32(b, 16, 52);
        Ok(())
    }

    /// SEND_FINISH (→ SENT) and SEND_CANCEL (→ RUNNING).
    pub(super) fn send_end(&mut self, b: &mut [u8], finish: bool) -> Fw {
        self.require(&[PlatformState::Working])?;
        let g = self.sev_guest_mut(rd32(b, 0))?;
        if g.state != SevGuestState::Supdate {
            return Err(S::InvalidGuestState);
        }
        g.keys = None;
        g.state = if finish {
            SevGuestState::Sent
        } else {
            SevGuestState::Running
        };
        Ok(())
    }

    /// RECEIVE_START (migration in): like LAUNCH_START with the sender's PDH as
    /// the DH certificate; the guest goes to RUPDATE.
    pub(super) fn receive_start(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Init, PlatformState::Working])?;
        let (shared, policy) = (rd32(b, 0), rd32(b, 4));
        if rd32(b, 32) != 0x80 {
            return Err(S::InvalidLen);
        }
        let session = SessionBuf::read_from_bytes(&self.read(rd64(b, 24), 0x80)?)
            .map_err(|_| S::InvalidLen)?;
        if rd32(b, 16) as usize != SEV_CERT_LEN {
            return Err(S::InvalidLen);
        }
        let peer = peer_pdh(&self.read_cert(rd64(b, 8))?)?;
        let z = shared_secret(&self.id.pdh, &peer);
        let wrap = WrapKeys::derive(&z[..], &session.nonce);
        let keys = unwrap_session(&wrap, &session, policy).map_err(|_| S::BadMeasurement)?;
        if !self.policy_ok(policy) {
            return Err(S::PolicyFailure);
        }
        let new = self.new_sev_guest(shared, policy, Some(keys), SevGuestState::Rupdate)?;
        wr32(b, 0, new);
        Ok(())
    }

    /// RECEIVE_UPDATE_DATA / RECEIVE_UPDATE_VMSA.
    pub(super) fn receive_update(&mut self, b: &mut [u8], vmsa: bool) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        let (hdr_pa, hdr_len) = (rd64(b, 8), rd32(b, 16));
        let (guest_pa, guest_len) = (rd64(b, 24), rd32(b, 32));
        let (trans_pa, trans_len) = (rd64(b, 40), rd32(b, 48));
        let g = self.sev_guest(handle)?;
        if g.state != SevGuestState::Rupdate {
            return Err(S::InvalidGuestState);
        }
        if vmsa && g.policy & POLICY_ES == 0 {
            return Err(S::Unsupported);
        }
        if self.asid_of(Owner::Sev(handle)).is_none() {
            return Err(S::Inactive);
        }
        if trans_len == 0
            || trans_len > SCRATCH_SIZE
            || guest_len == 0
            || guest_len != trans_len
            || !guest_len.is_multiple_of(16)
            || hdr_len < 52
        {
            return Err(S::InvalidLen);
        }
        if !guest_pa.is_multiple_of(16) {
            return Err(S::InvalidAddress);
        }
        let hdr = self.read(hdr_pa, 52)?;
        let flags = rd32(&hdr, 0);
        if flags & 1 != 0 {
            return Err(S::Unsupported);
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(hdr.get(4..20).unwrap_or(&[0; 16]));
        let mut data = Zeroizing::new(self.read(trans_pa, trans_len as usize)?);
        let g = self.sev_guest(handle)?;
        let (tek, tik) = g
            .keys
            .as_ref()
            .map_or(([0u8; 16], [0u8; 16]), |k| (k.tek, k.tik));
        let mac = hdr.get(20..52).unwrap_or(&[]);
        let len = trans_len.to_le_bytes();
        if !hmac_sha256_verify(
            &tik,
            &[&[CTX_DATA], &flags.to_le_bytes(), &iv, &len, &len, &data],
            mac,
        ) {
            return Err(S::BadMeasurement);
        }
        let vek = g.vek.clone();
        crate::owner::crypto::aes128_ctr(&tek, &iv, &mut data);
        mem_crypt(&vek, guest_pa, &mut data);
        self.write(guest_pa, &data)
    }

    /// RECEIVE_FINISH: completes a pending activation; RUPDATE → RUNNING.
    pub(super) fn receive_finish(&mut self, b: &mut [u8]) -> Fw {
        self.require(&[PlatformState::Working])?;
        let handle = rd32(b, 0);
        if self.sev_guest(handle)?.state != SevGuestState::Rupdate {
            return Err(S::InvalidGuestState);
        }
        self.asid_run(Owner::Sev(handle));
        let g = self.sev_guest_mut(handle)?;
        g.keys = None;
        g.state = SevGuestState::Running;
        Ok(())
    }
}

impl super::SimFirmware {
    /// What the SEV or SEV-ES guest with `handle` reads from its own memory at `pa` (within
    /// one 4 KiB page) through a C-bit mapping: the memory controller decrypts with the
    /// guest's VEK for the accesses of its ASID, whatever the NODBG policy bit says (unlike
    /// DBG_DECRYPT). INVALID_GUEST without such a guest, INACTIVE without an ASID,
    /// INVALID_LEN if the read crosses a page.
    pub fn guest_read_private_sev(&self, handle: u32, pa: u64, buf: &mut [u8]) -> Fw {
        let st = self.lock();
        let g = st.sev_guest(handle)?;
        if st.asid_of(Owner::Sev(handle)).is_none() {
            return Err(S::Inactive);
        }
        st.read_decrypted(&g.vek, pa, buf)
    }
}
