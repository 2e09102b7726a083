//! The launch-measurement calculators: SEV / SEV-ES launch digest (and the full
//! `LAUNCH_MEASURE` HMAC), SNP launch digest, TDX MRTD.
//!
//! Page contents digests are computed in parallel (rayon); only the SNP chain and the
//! SHA-256 / SHA-384 streams are sequential. One allocation holds all contents digests of a
//! plan; no allocation happens per page.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use psp_driver::digest::{
    PAGE_SIZE, SEV_DIGEST_SIZE, SNP_DIGEST_SIZE, SevLaunchDigest, SnpLaunchDigest,
    launch_measure_message, snp_page_contents,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256, Sha384};
use thiserror::Error;
use zeroize::Zeroizing;

use super::log::{LaunchLog, LogEntry};
use super::plan::{LaunchPlan, PageKind, Step, Tee};

/// A launch measurement.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaunchDigest {
    /// SEV / SEV-ES launch digest (SHA-256, before the `LAUNCH_MEASURE` HMAC).
    Sha256([u8; SEV_DIGEST_SIZE]),
    /// SNP MEASUREMENT or TDX MRTD (SHA-384).
    Sha384([u8; SNP_DIGEST_SIZE]),
}

impl LaunchDigest {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Sha256(d) => d,
            Self::Sha384(d) => d,
        }
    }
}

impl fmt::Display for LaunchDigest {
    /// Lower-case hex, as sev-snp-measure prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for LaunchDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LaunchDigest({self})")
    }
}

/// Receives progress while a plan is measured: called with the number of bytes just
/// processed, possibly from several threads.
pub trait Progress: Sync {
    /// `bytes` more bytes were measured.
    fn advance(&self, bytes: u64);
}

/// Options for [`measure`].
#[derive(Clone, Copy, Default)]
pub struct MeasureOptions<'p> {
    /// Record a [`LaunchLog`] (costs an extra SHA-256/384 of SEV and TDX content).
    pub log: bool,
    /// Progress receiver.
    pub progress: Option<&'p dyn Progress>,
}

impl fmt::Debug for MeasureOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeasureOptions")
            .field("log", &self.log)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The result of [`measure`].
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The final measurement.
    pub digest: LaunchDigest,
    /// The launch log, if requested.
    pub log: Option<LaunchLog>,
}

/// Why a plan cannot be measured (only possible for hand-built plans; the constructors of
/// [`LaunchPlan`] produce valid ones).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// A step is not page aligned where the technology measures pages.
    #[error("step {index}: {gpa:#x}+{len:#x} is not 4 KiB aligned")]
    Misaligned {
        /// Step index.
        index: usize,
        /// Its GPA.
        gpa: u64,
        /// Its length.
        len: u64,
    },
    /// A step's data is longer than the step.
    #[error("step {index}: {data} data bytes for a {len}-byte step")]
    DataTooLong {
        /// Step index.
        index: usize,
        /// Data length.
        data: usize,
        /// Step length.
        len: u64,
    },
    /// A step kind the technology cannot add.
    #[error("step {index}: {kind:?} is not a {tee} launch operation")]
    UnsupportedKind {
        /// Step index.
        index: usize,
        /// The kind.
        kind: PageKind,
        /// The technology.
        tee: Tee,
    },
    /// A VMSA step that is not exactly one page.
    #[error("step {index}: a VMSA must be exactly 4096 bytes, is {len}")]
    VmsaSize {
        /// Step index.
        index: usize,
        /// Its length.
        len: u64,
    },
    /// An initial digest on a plan that is not SNP.
    #[error("an initial digest only applies to SNP plans")]
    InitialDigestNotSnp,
}

/// Measures a plan: the value the firmware (or TDX module) would report after executing it.
///
/// # Errors
/// A [`MeasureError`] for an inconsistent hand-built plan.
pub fn measure(
    plan: &LaunchPlan<'_>,
    opts: &MeasureOptions<'_>,
) -> Result<Measurement, MeasureError> {
    validate(plan)?;
    match plan.tee {
        Tee::Sev | Tee::SevEs => Ok(measure_sev(plan, opts)),
        Tee::Snp => Ok(measure_snp(plan, opts)),
        Tee::Tdx => Ok(measure_tdx(plan, opts)),
    }
}

fn validate(plan: &LaunchPlan<'_>) -> Result<(), MeasureError> {
    if plan.initial_digest.is_some() && plan.tee != Tee::Snp {
        return Err(MeasureError::InitialDigestNotSnp);
    }
    for (index, s) in plan.steps.iter().enumerate() {
        let data = s.data.as_slice().len();
        if data as u64 > s.len {
            return Err(MeasureError::DataTooLong {
                index,
                data,
                len: s.len,
            });
        }
        let allowed = match plan.tee {
            Tee::Sev => s.kind == PageKind::Measured,
            Tee::SevEs => matches!(s.kind, PageKind::Measured | PageKind::Vmsa),
            Tee::Snp => true,
            Tee::Tdx => matches!(s.kind, PageKind::Measured | PageKind::Unmeasured),
        };
        if !allowed {
            return Err(MeasureError::UnsupportedKind {
                index,
                kind: s.kind,
                tee: plan.tee,
            });
        }
        if s.kind == PageKind::Vmsa && s.len != PAGE_SIZE as u64 {
            return Err(MeasureError::VmsaSize { index, len: s.len });
        }
        let paged = matches!(plan.tee, Tee::Snp | Tee::Tdx);
        if paged
            && (!s.gpa.is_multiple_of(PAGE_SIZE as u64) || !s.len.is_multiple_of(PAGE_SIZE as u64))
        {
            return Err(MeasureError::Misaligned {
                index,
                gpa: s.gpa,
                len: s.len,
            });
        }
    }
    Ok(())
}

/// Page `i` of a step, zero-padded past the data into `buf` when needed.
fn page_of<'b>(step: &'b Step<'_>, i: usize, buf: &'b mut [u8; PAGE_SIZE]) -> &'b [u8; PAGE_SIZE] {
    let data = step.data.as_slice();
    let start = i * PAGE_SIZE;
    if let Some(full) = data
        .get(start..start + PAGE_SIZE)
        .and_then(|s| <&[u8; PAGE_SIZE]>::try_from(s).ok())
    {
        return full;
    }
    buf.fill(0);
    if let Some(part) = data.get(start..) {
        buf[..part.len()].copy_from_slice(part);
    }
    buf
}

/// Digests of every page of every step whose contents are needed (`want(step)`), computed in
/// parallel, in plan order. One allocation for the whole plan.
fn page_digests(
    plan: &LaunchPlan<'_>,
    want: impl Fn(&Step<'_>) -> bool + Sync,
    f: impl Fn(&Step<'_>, &[u8; PAGE_SIZE]) -> [u8; SNP_DIGEST_SIZE] + Sync,
    progress: Option<&dyn Progress>,
) -> Vec<[u8; SNP_DIGEST_SIZE]> {
    let pages = |s: &Step<'_>| (s.len as usize).div_ceil(PAGE_SIZE);
    let total: usize = plan.steps.iter().filter(|s| want(s)).map(pages).sum();
    let mut out = vec![[0u8; SNP_DIGEST_SIZE]; total];
    let mut rest = &mut out[..];
    let mut jobs = Vec::with_capacity(plan.steps.len());
    for s in plan.steps.iter().filter(|s| want(s)) {
        let (mine, tail) = rest.split_at_mut(pages(s));
        rest = tail;
        jobs.push((s, mine));
    }
    jobs.into_par_iter().for_each(|(s, mine)| {
        mine.par_iter_mut().enumerate().for_each(|(i, o)| {
            let mut buf = [0u8; PAGE_SIZE];
            *o = f(s, page_of(s, i, &mut buf));
            if let Some(p) = progress {
                p.advance(PAGE_SIZE as u64);
            }
        });
    });
    out
}

fn measure_snp(plan: &LaunchPlan<'_>, opts: &MeasureOptions<'_>) -> Measurement {
    let contents = page_digests(
        plan,
        |s| s.kind.snp_page_type().measures_contents(),
        |s, p| snp_page_contents(s.kind.snp_page_type(), p),
        opts.progress,
    );
    let mut ld = SnpLaunchDigest::from_digest(plan.initial_digest.unwrap_or([0; SNP_DIGEST_SIZE]));
    let mut entries = Vec::with_capacity(if opts.log { contents.len() } else { 0 });
    let mut k = 0;
    for (index, s) in plan.steps.iter().enumerate() {
        let t = s.kind.snp_page_type();
        for i in 0..(s.len as usize) / PAGE_SIZE {
            let gpa = if s.kind == PageKind::Vmsa {
                s.gpa
            } else {
                s.gpa + (i * PAGE_SIZE) as u64
            };
            let c = if t.measures_contents() {
                k += 1;
                &contents[k - 1]
            } else {
                if let Some(p) = opts.progress {
                    p.advance(PAGE_SIZE as u64);
                }
                &ZERO_DIGEST
            };
            ld.update(t, gpa, c);
            if opts.log {
                entries.push(LogEntry {
                    step: index,
                    gpa,
                    len: PAGE_SIZE as u64,
                    kind: s.kind,
                    origin: s.origin,
                    contents: t.measures_contents().then(|| c.to_vec()),
                    running: ld.digest().to_vec(),
                });
            }
        }
    }
    let digest = LaunchDigest::Sha384(ld.digest());
    Measurement {
        digest,
        log: opts.log.then(|| LaunchLog {
            tee: plan.tee,
            initial: plan.initial_digest.map(|d| d.to_vec()),
            entries,
            digest: digest.as_bytes().to_vec(),
        }),
    }
}

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
static ZERO_DIGEST: [u8; SNP_DIGEST_SIZE] = [0; SNP_DIGEST_SIZE];

/// Feeds `len` bytes of `data` zero-padded to `feed`.
fn stream(data: &[u8], len: u64, mut feed: impl FnMut(&[u8])) {
    feed(data);
    let mut pad = len - data.len() as u64;
    while pad > 0 {
        let n = pad.min(PAGE_SIZE as u64) as usize;
        feed(&ZERO_PAGE[..n]);
        pad -= n as u64;
    }
}

fn measure_sev(plan: &LaunchPlan<'_>, opts: &MeasureOptions<'_>) -> Measurement {
    let step_digest = |s: &Step<'_>| -> [u8; SEV_DIGEST_SIZE] {
        let mut h = Sha256::new();
        stream(s.data.as_slice(), s.len, |b| h.update(b));
        h.finalize().into()
    };
    let run = || {
        let mut ld = SevLaunchDigest::new();
        let mut running = Vec::new();
        for s in &plan.steps {
            stream(s.data.as_slice(), s.len, |b| ld.update(b));
            if let Some(p) = opts.progress {
                p.advance(s.len);
            }
            if opts.log {
                running.push(ld.current());
            }
        }
        (ld.finalize(), running)
    };
    let ((ld, running), contents) = if opts.log {
        rayon::join(run, || {
            plan.steps.par_iter().map(step_digest).collect::<Vec<_>>()
        })
    } else {
        (run(), Vec::new())
    };
    let digest = LaunchDigest::Sha256(ld);
    let log = opts.log.then(|| LaunchLog {
        tee: plan.tee,
        initial: None,
        entries: plan
            .steps
            .iter()
            .zip(contents.iter().zip(&running))
            .enumerate()
            .map(|(index, (s, (c, r)))| LogEntry {
                step: index,
                gpa: s.gpa,
                len: s.len,
                kind: s.kind,
                origin: s.origin,
                contents: Some(c.to_vec()),
                running: r.to_vec(),
            })
            .collect(),
        digest: digest.as_bytes().to_vec(),
    });
    Measurement { digest, log }
}

/// Size of one TDX measurement block.
pub const TDX_BLOCK: usize = 128;
/// Bytes of page content one `TDH.MR.EXTEND` measures.
pub const TDX_EXTEND_CHUNK: usize = 256;

/// The 128-byte block `TDH.MEM.PAGE.ADD` appends to the MRTD stream for `gpa`.
pub fn tdx_page_add_block(gpa: u64) -> [u8; TDX_BLOCK] {
    let mut b = [0u8; TDX_BLOCK];
    b[..12].copy_from_slice(b"MEM.PAGE.ADD");
    b[16..24].copy_from_slice(&gpa.to_le_bytes());
    b
}

/// The 128-byte header block `TDH.MR.EXTEND` appends for the 256 bytes at `gpa` (which
/// follow it in the stream).
pub fn tdx_mr_extend_block(gpa: u64) -> [u8; TDX_BLOCK] {
    let mut b = [0u8; TDX_BLOCK];
    b[..9].copy_from_slice(b"MR.EXTEND");
    b[16..24].copy_from_slice(&gpa.to_le_bytes());
    b
}

fn measure_tdx(plan: &LaunchPlan<'_>, opts: &MeasureOptions<'_>) -> Measurement {
    let contents = if opts.log {
        page_digests(
            plan,
            |s| s.kind == PageKind::Measured,
            |_, p| Sha384::digest(p).into(),
            None,
        )
    } else {
        Vec::new()
    };
    let mut h = Sha384::new();
    let mut entries = Vec::with_capacity(contents.len());
    let mut k = 0;
    for (index, s) in plan.steps.iter().enumerate() {
        let extend = s.kind == PageKind::Measured;
        for i in 0..(s.len as usize) / PAGE_SIZE {
            let gpa = s.gpa + (i * PAGE_SIZE) as u64;
            h.update(tdx_page_add_block(gpa));
            if extend {
                let mut buf = [0u8; PAGE_SIZE];
                let page = page_of(s, i, &mut buf);
                for (j, chunk) in page.chunks_exact(TDX_EXTEND_CHUNK).enumerate() {
                    h.update(tdx_mr_extend_block(gpa + (j * TDX_EXTEND_CHUNK) as u64));
                    h.update(chunk);
                }
            }
            if let Some(p) = opts.progress {
                p.advance(PAGE_SIZE as u64);
            }
            if opts.log {
                entries.push(LogEntry {
                    step: index,
                    gpa,
                    len: PAGE_SIZE as u64,
                    kind: s.kind,
                    origin: s.origin,
                    contents: extend.then(|| contents[k].to_vec()),
                    running: h.clone().finalize().to_vec(),
                });
            }
            if extend {
                k += 1;
            }
        }
    }
    let digest = LaunchDigest::Sha384(h.finalize().into());
    Measurement {
        digest,
        log: opts.log.then(|| LaunchLog {
            tee: plan.tee,
            initial: None,
            entries,
            digest: digest.as_bytes().to_vec(),
        }),
    }
}

/// The guest owner's Transport Integrity Key (16 bytes), zeroized on drop.
#[derive(Clone)]
pub struct Tik(Zeroizing<[u8; 16]>);

impl Tik {
    /// Wraps a TIK.
    pub fn new(key: [u8; 16]) -> Self {
        Self(Zeroizing::new(key))
    }
}

impl fmt::Debug for Tik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tik(..)")
    }
}

/// The firmware values `LAUNCH_MEASURE` MACs next to the launch digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevMeasureParams {
    /// Firmware API major version (PLATFORM_STATUS).
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build.
    pub build: u8,
    /// Guest policy.
    pub policy: u32,
    /// The 16-byte nonce the firmware returned with the measurement.
    pub mnonce: [u8; 16],
}

/// The SEV `LAUNCH_MEASURE` value: `HMAC-SHA256(TIK, 0x04 ‖ api_major ‖ api_minor ‖ build ‖
/// policy ‖ LD ‖ mnonce)`.
///
/// ```
/// use kvm_coco::measure::calc::{sev_launch_measure, SevMeasureParams, Tik};
/// // Vector from the `sev` crate's session tests (LD = SHA-256 of nothing).
/// let tik = Tik::new(hex::decode("66320db73158a35a255d051758e95ed4").unwrap().try_into().unwrap());
/// let ld: [u8; 32] = hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
///     .unwrap().try_into().unwrap();
/// let p = SevMeasureParams {
///     api_major: 0, api_minor: 0x12, build: 0x0f, policy: 0,
///     mnonce: hex::decode("4fbe0bedbad6c86ae8f68971d103e554").unwrap().try_into().unwrap(),
/// };
/// assert_eq!(
///     hex::encode(sev_launch_measure(&tik, &p, &ld)),
///     "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"
/// );
/// ```
pub fn sev_launch_measure(
    tik: &Tik,
    params: &SevMeasureParams,
    ld: &[u8; SEV_DIGEST_SIZE],
) -> [u8; 32] {
    let msg = launch_measure_message(
        params.api_major,
        params.api_minor,
        params.build,
        params.policy,
        ld,
        &params.mnonce,
    );
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&tik.0[..]) else {
        unreachable!("HMAC accepts keys of any length")
    };
    mac.update(&msg);
    mac.finalize().into_bytes().into()
}
