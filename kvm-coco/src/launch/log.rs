//! The launcher's side of the launch log: each operation is recorded when the kernel
//! reports it done, with a copy of the bytes actually handed over. The digests (content
//! digests, running digest, final digest, in the format of [`crate::measure::log`]) are
//! computed when the log is first asked for, not during the launch: a VMM that never
//! compares against the host-side expected value does not pay for hashing the image twice
//! (the platform hashes it once).

use std::sync::Arc;

use psp_driver::digest::{
    PAGE_SIZE, SNP_DIGEST_SIZE, SevLaunchDigest, SnpLaunchDigest, SnpPageType, snp_page_contents,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256, Sha384};

use super::backend::Source;
use crate::measure::calc::{TDX_EXTEND_CHUNK, tdx_mr_extend_block, tdx_page_add_block};
use crate::measure::log::{LaunchLog, LogEntry};
use crate::measure::plan::{Origin, PageKind, Tee};

/// One recorded operation.
#[derive(Debug, Clone)]
struct Op {
    step: usize,
    gpa: u64,
    /// Bytes covered: whole pages for SNP and TDX, the region for SEV.
    len: u64,
    kind: PageKind,
    origin: Origin,
    /// The bytes handed over, when their content enters the measurement (`None` for
    /// pages whose content is not measured).
    data: Option<Bytes>,
}

/// `len` bytes at `offset` of a shared buffer: the plan's own data when it is shared
/// (no copy), else a copy.
#[derive(Debug, Clone)]
struct Bytes {
    buf: Arc<[u8]>,
    offset: usize,
    len: usize,
}

impl Bytes {
    /// The `len` bytes at `gpa` read through `src` (zero-padded), sharing `shared` when it
    /// is the buffer `src` reads and holds the whole range.
    fn of(src: Source<'_>, shared: Option<&Arc<[u8]>>, gpa: u64, len: u64) -> Self {
        let len = usize::try_from(len).unwrap_or(0);
        let off = gpa
            .checked_sub(src.gpa)
            .and_then(|o| usize::try_from(o).ok());
        if let (Some(buf), Some(offset)) = (shared, off)
            && std::ptr::eq(buf.as_ptr(), src.bytes.as_ptr())
            && offset.checked_add(len).is_some_and(|end| end <= buf.len())
        {
            return Self {
                buf: buf.clone(),
                offset,
                len,
            };
        }
        let mut v = vec![0u8; len];
        if let Some(from) = off.and_then(|o| src.bytes.get(o..)) {
            let n = from.len().min(len);
            v[..n].copy_from_slice(&from[..n]);
        }
        Self {
            buf: v.into(),
            offset: 0,
            len,
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.buf
            .get(self.offset..self.offset + self.len)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LogBuilder {
    tee: Tee,
    ops: Vec<Op>,
}

impl LogBuilder {
    pub(crate) fn new(tee: Tee) -> Self {
        Self {
            tee,
            ops: Vec::new(),
        }
    }

    /// Whether the content of a `kind` page enters the measurement of this launch.
    fn measures(&self, kind: PageKind) -> bool {
        match self.tee {
            Tee::Snp => kind.snp_page_type().measures_contents(),
            Tee::Tdx => kind == PageKind::Measured,
            Tee::Sev | Tee::SevEs => true,
        }
    }

    /// `npages` 4 KiB pages at `gpa` of one SNP or TDX operation, their content read
    /// through `src` (zero-padded; zero pages are zero whatever `src` holds). `shared` is
    /// the step's data when the plan shares it: it is then kept instead of copied.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pages(
        &mut self,
        step: usize,
        gpa: u64,
        npages: u64,
        kind: PageKind,
        origin: Origin,
        src: Source<'_>,
        shared: Option<&Arc<[u8]>>,
    ) {
        if npages == 0 || matches!(self.tee, Tee::Sev | Tee::SevEs) {
            return;
        }
        let len = npages * PAGE_SIZE as u64;
        let data = (self.measures(kind) && kind != PageKind::Zero)
            .then(|| Bytes::of(src, shared, gpa, len));
        self.ops.push(Op {
            step,
            gpa,
            len,
            kind,
            origin,
            data,
        });
    }

    /// One SEV / SEV-ES region, measured as a stream (`shared` as for
    /// [`pages`](Self::pages)).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn region(
        &mut self,
        step: usize,
        gpa: u64,
        len: u64,
        kind: PageKind,
        origin: Origin,
        src: Source<'_>,
        shared: Option<&Arc<[u8]>>,
    ) {
        self.ops.push(Op {
            step,
            gpa,
            len,
            kind,
            origin,
            data: Some(Bytes::of(src, shared, gpa, len)),
        });
    }

    /// The log of the operations recorded so far, digests computed now (SNP content
    /// digests in parallel; the chains in order).
    pub(crate) fn finish(&self) -> LaunchLog {
        let (entries, digest) = match self.tee {
            Tee::Snp => self.snp(),
            Tee::Tdx => self.tdx(),
            Tee::Sev | Tee::SevEs => self.sev(),
        };
        LaunchLog {
            tee: self.tee,
            initial: None,
            entries,
            digest,
        }
    }

    fn snp(&self) -> (Vec<LogEntry>, Vec<u8>) {
        // Every measured page, in order, hashed on all cores.
        let measured: Vec<(SnpPageType, &[u8])> = self
            .ops
            .iter()
            .filter_map(|op| Some((op.kind.snp_page_type(), op.data.as_ref()?.as_slice())))
            .flat_map(|(t, d)| d.chunks(PAGE_SIZE).map(move |p| (t, p)))
            .collect();
        let contents: Vec<[u8; SNP_DIGEST_SIZE]> = measured
            .par_iter()
            .map(|(t, p)| snp_page_contents(*t, &page_of(p)))
            .collect();
        let mut contents = contents.into_iter();
        let mut ld = SnpLaunchDigest::new();
        let mut entries = Vec::new();
        for op in &self.ops {
            let t = op.kind.snp_page_type();
            for i in 0..op.len / PAGE_SIZE as u64 {
                let gpa = op.gpa + i * PAGE_SIZE as u64;
                let c = if op.data.is_some() {
                    contents.next().unwrap_or([0; SNP_DIGEST_SIZE])
                } else {
                    [0; SNP_DIGEST_SIZE]
                };
                ld.update(t, gpa, &c);
                entries.push(LogEntry {
                    step: op.step,
                    gpa,
                    len: PAGE_SIZE as u64,
                    kind: op.kind,
                    origin: op.origin,
                    contents: op.data.is_some().then(|| c.to_vec()),
                    running: ld.digest().to_vec(),
                });
            }
        }
        (entries, ld.digest().to_vec())
    }

    fn tdx(&self) -> (Vec<LogEntry>, Vec<u8>) {
        let mut h = Sha384::new();
        let mut entries = Vec::new();
        for op in &self.ops {
            for i in 0..op.len / PAGE_SIZE as u64 {
                let gpa = op.gpa + i * PAGE_SIZE as u64;
                h.update(tdx_page_add_block(gpa));
                let contents = op.data.as_ref().map(|d| {
                    let d = d.as_slice();
                    let off = (i as usize) * PAGE_SIZE;
                    let page = page_of(d.get(off..).unwrap_or_default());
                    for (j, chunk) in page.chunks_exact(TDX_EXTEND_CHUNK).enumerate() {
                        h.update(tdx_mr_extend_block(gpa + (j * TDX_EXTEND_CHUNK) as u64));
                        h.update(chunk);
                    }
                    Sha384::digest(page).to_vec()
                });
                entries.push(LogEntry {
                    step: op.step,
                    gpa,
                    len: PAGE_SIZE as u64,
                    kind: op.kind,
                    origin: op.origin,
                    contents,
                    running: h.clone().finalize().to_vec(),
                });
            }
        }
        (entries, h.finalize().to_vec())
    }

    fn sev(&self) -> (Vec<LogEntry>, Vec<u8>) {
        let mut ld = SevLaunchDigest::new();
        let mut entries = Vec::new();
        for op in &self.ops {
            let data = op.data.as_ref().map(Bytes::as_slice).unwrap_or_default();
            ld.update(data);
            entries.push(LogEntry {
                step: op.step,
                gpa: op.gpa,
                len: op.len,
                kind: op.kind,
                origin: op.origin,
                contents: Some(Sha256::digest(data).to_vec()),
                running: ld.current().to_vec(),
            });
        }
        (entries, ld.finalize().to_vec())
    }
}

/// The first page of `bytes`, zero-padded.
fn page_of(bytes: &[u8]) -> [u8; PAGE_SIZE] {
    let mut p = [0u8; PAGE_SIZE];
    let n = bytes.len().min(PAGE_SIZE);
    p[..n].copy_from_slice(&bytes[..n]);
    p
}
