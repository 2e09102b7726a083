//! The launcher's side of the launch log: each operation is recorded when the kernel
//! reports it done, with the content digest of the bytes actually handed over and the
//! running digest, in the format of [`crate::measure::log`].

use psp_driver::digest::{
    PAGE_SIZE, SNP_DIGEST_SIZE, SevLaunchDigest, SnpLaunchDigest, snp_page_contents,
};
use sha2::{Digest, Sha256, Sha384};

use super::backend::Source;
use crate::measure::calc::{TDX_EXTEND_CHUNK, tdx_mr_extend_block, tdx_page_add_block};
use crate::measure::log::{LaunchLog, LogEntry};
use crate::measure::plan::{Origin, PageKind, Tee};

#[derive(Debug, Clone)]
pub(crate) struct LogBuilder {
    tee: Tee,
    entries: Vec<LogEntry>,
    snp: SnpLaunchDigest,
    tdx: Sha384,
    sev: SevLaunchDigest,
}

impl LogBuilder {
    pub(crate) fn new(tee: Tee) -> Self {
        Self {
            tee,
            entries: Vec::new(),
            snp: SnpLaunchDigest::new(),
            tdx: Sha384::new(),
            sev: SevLaunchDigest::new(),
        }
    }

    /// One 4 KiB page of an SNP or TDX operation; `precomputed` is the page's SNP content
    /// digest when the caller already has it.
    pub(crate) fn page(
        &mut self,
        step: usize,
        gpa: u64,
        kind: PageKind,
        origin: Origin,
        page: &[u8; PAGE_SIZE],
        precomputed: Option<&[u8; SNP_DIGEST_SIZE]>,
    ) {
        let contents = match self.tee {
            Tee::Snp => {
                let t = kind.snp_page_type();
                let c = match precomputed {
                    Some(c) if t.measures_contents() => *c,
                    _ if t.measures_contents() => snp_page_contents(t, page),
                    _ => [0; SNP_DIGEST_SIZE],
                };
                self.snp.update(t, gpa, &c);
                t.measures_contents().then(|| c.to_vec())
            }
            Tee::Tdx => {
                self.tdx.update(tdx_page_add_block(gpa));
                if kind == PageKind::Measured {
                    for (j, chunk) in page.chunks_exact(TDX_EXTEND_CHUNK).enumerate() {
                        self.tdx
                            .update(tdx_mr_extend_block(gpa + (j * TDX_EXTEND_CHUNK) as u64));
                        self.tdx.update(chunk);
                    }
                    Some(Sha384::digest(page).to_vec())
                } else {
                    None
                }
            }
            Tee::Sev | Tee::SevEs => return,
        };
        let running = self.running();
        self.entries.push(LogEntry {
            step,
            gpa,
            len: PAGE_SIZE as u64,
            kind,
            origin,
            contents,
            running,
        });
    }

    /// One SEV / SEV-ES region, measured as a stream.
    pub(crate) fn region(
        &mut self,
        step: usize,
        gpa: u64,
        len: u64,
        kind: PageKind,
        origin: Origin,
        src: Source<'_>,
    ) {
        let mut h = Sha256::new();
        let mut page = [0u8; PAGE_SIZE];
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(PAGE_SIZE as u64) as usize;
            src.page(gpa + off, &mut page);
            h.update(&page[..n]);
            self.sev.update(&page[..n]);
            off += n as u64;
        }
        self.entries.push(LogEntry {
            step,
            gpa,
            len,
            kind,
            origin,
            contents: Some(h.finalize().to_vec()),
            running: self.sev.current().to_vec(),
        });
    }

    fn running(&self) -> Vec<u8> {
        match self.tee {
            Tee::Snp => self.snp.digest().to_vec(),
            Tee::Tdx => self.tdx.clone().finalize().to_vec(),
            Tee::Sev | Tee::SevEs => self.sev.current().to_vec(),
        }
    }

    pub(crate) fn finish(&self) -> LaunchLog {
        let digest = match self.tee {
            Tee::Sev | Tee::SevEs => self.sev.clone().finalize().to_vec(),
            _ => self.running(),
        };
        LaunchLog {
            tee: self.tee,
            initial: None,
            entries: self.entries.clone(),
            digest,
        }
    }
}
