//! `vmm-cli report`: parse, display and verify attestation evidence.
//!
//! Accepted inputs (detected by size and header):
//! * an SEV-SNP attestation report (exactly 0x4A0 = 1184 bytes, version 2 to 5, signature
//!   algorithm 1 = ECDSA P-384/SHA-384);
//! * an Intel TDX TD quote v4 (header version 4, TEE type 0x81);
//! * an Intel TDX TDREPORT (exactly 1024 bytes, type byte 0x81).
//!
//! Verification:
//! * `--sim-chain [--seed N]`: against the simulated platform of the software host seeded
//!   with N (default 0), as `vmm-cli launch` and `vmm-cli sim-host` run it (the ARK → ASK →
//!   VCEK chain psp-driver's firmware derives from its seed, for SNP; the software TDX
//!   module's report MAC and quoting key, for TDX);
//! * `--chain FILE...`: an SNP report against AMD's X.509 endorsement chain, as served by
//!   AMD's Key Distribution Service: the ARK, the ASK (or ASVK) and the VCEK (or VLEK), as PEM
//!   or DER files in any order, a KDS `cert_chain` bundle plus the VCEK, or the VCEK alone
//!   (AMD's built-in Milan/Genoa/Turin ARK and ASK complete it), or the certificate table
//!   of an extended report (GUID-indexed, as a host serves it to guests). The chain must be rooted in
//!   AMD's ARK unless `--allow-unknown-root`; validity is checked now (or `--at`); the
//!   report's REPORTED_TCB and CHIP_ID must be those the VCEK was issued for. Three files in
//!   the SEV certificate format (0x824 bytes, P-384) verify a report of the software
//!   firmware against its simulated chain.
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use kvm_coco::sim::tdx::report::{TDREPORT_SIZE, TDX_REPORT_TYPE};
use kvm_coco::sim::tdx::{SimTdxModule, TdQuote, TdReport, TdxModuleConfig};
use psp_driver::owner::cert::{SEV_CERT_LEN, SevCert};
use psp_driver::owner::snp::{SnpCertChain, verify_report};
use psp_driver::owner::x509::{
    self, AmdCert, AmdChain, AmdCrl, Product, Root, VerifyOptions, X509Error,
};
use psp_driver::report::{AttestationReport, REPORT_LEN, SIG_ALGO_ECDSA_P384_SHA384, TcbVersion};
use psp_driver::sim::{PhysMem, SimConfig, SimFirmware};
use zerocopy::FromBytes;

use crate::util::{self, error_chain, print_json};
use crate::{CliError, Outcome, cli_err};

/// Options of `vmm-cli report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report or quote file.
    file: PathBuf,
    /// Verify an SNP report against AMD's certificates: ARK, ASK and VCEK (PEM or DER, any
    /// order), a KDS cert_chain bundle plus the VCEK, or the VCEK alone (AMD's built-in ARK
    /// and ASK complete it), or an extended report's certificate table. Three SEV-format
    /// certificates (0x824 bytes) are also accepted.
    #[arg(long, num_args = 1..=3, value_name = "CERT", conflicts_with = "sim_chain")]
    chain: Option<Vec<PathBuf>>,
    /// Accept a chain whose root is not AMD's ARK (test hierarchies).
    #[arg(long, requires = "chain")]
    allow_unknown_root: bool,
    /// Check the chain against AMD's revocation list (KDS `/vcek/v1/{product}/crl`, DER or
    /// PEM): the list must be signed by the chain's ARK and must not name its ASK.
    #[arg(long, value_name = "FILE", requires = "chain")]
    crl: Option<PathBuf>,
    /// Check certificate validity at this time (seconds since the Unix epoch) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS", requires = "chain", value_parser = util::int::<u64>)]
    at: Option<u64>,
    /// Verify against the simulated platform (software firmware / TDX module).
    #[arg(long)]
    sim_chain: bool,
    /// Seed of the simulated platform (as given to `vmm-cli launch --seed`).
    #[arg(long, value_name = "N", requires = "sim_chain", value_parser = util::int::<u64>)]
    seed: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What the file holds.
pub(crate) enum Evidence {
    /// An SNP attestation report.
    Snp(Box<AttestationReport>),
    /// A TD quote v4.
    Quote(Box<TdQuote>),
    /// A TDREPORT.
    TdReport(Box<TdReport>),
}

/// Detects and parses evidence.
///
/// # Errors
/// A one-line error for anything that is not a complete report or quote.
pub(crate) fn parse(bytes: &[u8]) -> Result<Evidence, CliError> {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u16_at(0) == Some(4) && u32_at(4) == Some(0x81) {
        return TdQuote::parse(bytes)
            .map(|q| Evidence::Quote(Box::new(q)))
            .map_err(|e| cli_err!("truncated or malformed TD quote: {e}"));
    }
    if bytes.len() == REPORT_LEN {
        let r = AttestationReport::read_from_bytes(bytes)
            .map_err(|_| cli_err!("not an SNP attestation report"))?;
        let v = r.version.get();
        if !(2..=5).contains(&v) || r.signature_algo.get() != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(cli_err!(
                "not an SNP attestation report (version {v}, signature algorithm {})",
                r.signature_algo.get()
            ));
        }
        return Ok(Evidence::Snp(Box::new(r)));
    }
    if bytes.len() == TDREPORT_SIZE && bytes.first() == Some(&TDX_REPORT_TYPE) {
        return TdReport::from_slice(bytes)
            .map(|r| Evidence::TdReport(Box::new(r)))
            .map_err(|e| cli_err!("malformed TDREPORT: {e}"));
    }
    Err(cli_err!(
        "not an SNP attestation report ({REPORT_LEN} bytes), a TDX TDREPORT ({TDREPORT_SIZE} bytes) or a TD quote v4: {} bytes{}",
        bytes.len(),
        if bytes.len() < REPORT_LEN && bytes.len() > 64 {
            " (truncated?)"
        } else {
            ""
        }
    ))
}

/// The simulated SNP chain of the software host seeded with `seed` (default 0), as
/// `vmm-cli launch --seed` and `vmm-cli sim-host --seed` run it: the software firmware's
/// default 32-byte seed with `seed` little-endian in bytes 0..8.
pub(crate) fn sim_snp_chain(seed: Option<u64>) -> SnpCertChain {
    let mut cfg = SimConfig::default();
    cfg.seed[..8].copy_from_slice(&seed.unwrap_or(0).to_le_bytes());
    SimFirmware::new(cfg, Arc::new(PhysMem::new())).certs().snp
}

/// The software TDX module seeded like `vmm-cli launch --seed` and `sim-host --seed`: the
/// seed in the first 8 bytes of the module's default seed (no seed: 0).
pub(crate) fn sim_tdx_module(seed: Option<u64>) -> SimTdxModule {
    let mut cfg = TdxModuleConfig::default();
    cfg.seed[..8].copy_from_slice(&seed.unwrap_or(0).to_le_bytes());
    SimTdxModule::new(cfg)
}

/// The certificates given to `--chain`.
enum Chain {
    /// AMD's X.509 hierarchy.
    Amd(Box<AmdChain>),
    /// The SEV certificate format (the software firmware's simulated chain).
    Sev(Box<SnpCertChain>),
}

fn is_x509(b: &[u8]) -> bool {
    b.trim_ascii_start().starts_with(b"-----BEGIN") || b.first() == Some(&0x30)
}

fn read_chain(files: &[PathBuf]) -> Result<Chain, CliError> {
    let contents = files
        .iter()
        .map(|p| util::read("certificate", p).map(|b| (p, b)))
        .collect::<Result<Vec<_>, _>>()?;
    if let [(p, b)] = contents.as_slice()
        && x509::looks_like_cert_table(b)
    {
        return AmdChain::from_cert_table(b)
            .map(|c| Chain::Amd(Box::new(c)))
            .map_err(|e| cli_err!("certificate table '{}': {}", p.display(), error_chain(&e)));
    }
    if contents.iter().any(|(_, b)| is_x509(b)) {
        let mut certs = Vec::new();
        for (p, b) in &contents {
            let parsed = AmdCert::parse(b)
                .map_err(|e| cli_err!("certificate '{}': {}", p.display(), error_chain(&e)))?;
            certs.extend(parsed);
        }
        return AmdChain::from_certs(certs)
            .map(|c| Chain::Amd(Box::new(c)))
            .map_err(|e| cli_err!("--chain: {e}"));
    }
    let sev = |(p, b): &(&PathBuf, Vec<u8>)| -> Result<SevCert, CliError> {
        if b.len() != SEV_CERT_LEN {
            return Err(cli_err!(
                "certificate '{}' is {} bytes: neither X.509 (PEM/DER) nor the SEV format ({SEV_CERT_LEN} bytes)",
                p.display(),
                b.len()
            ));
        }
        SevCert::read_from_bytes(b)
            .map_err(|_| cli_err!("certificate '{}' is malformed", p.display()))
    };
    match contents.as_slice() {
        [ark, ask, vcek] => Ok(Chain::Sev(Box::new(SnpCertChain {
            ark: sev(ark)?,
            ask: sev(ask)?,
            vcek: sev(vcek)?,
        }))),
        _ => {
            // Report the first file's format problem, if any, before the count.
            for c in &contents {
                sev(c)?;
            }
            Err(cli_err!(
                "--chain with SEV-format certificates takes three files: ARK ASK VCEK"
            ))
        }
    }
}

/// Verifies `r` against AMD's chain (`opts.at` is always set here: now or `--at`); the
/// message names the chain and what was checked.
fn verify_amd(
    r: &AttestationReport,
    chain: &AmdChain,
    opts: &VerifyOptions,
    crl: Option<&AmdCrl>,
) -> Result<(String, serde_json::Value, Product), String> {
    let v = x509::verify_report(r, chain, opts).map_err(|e| match e {
        X509Error::UnknownRoot { .. } => format!("{e}; --allow-unknown-root accepts it"),
        X509Error::Expired { .. } | X509Error::NotYetValid { .. } => {
            format!("{e}; --at checks at another time")
        }
        e => error_chain(&e),
    })?;
    let root = match v.chain.root {
        Root::Amd(p) => format!("AMD ARK-{p}"),
        Root::Unknown => format!("'{}' (not AMD's root)", chain.ark.label()),
    };
    let mut checks = vec![format!(
        "signature verified: {root} -> {} -> {}",
        chain.ask.label(),
        chain.leaf.label()
    )];
    if v.tcb_checked {
        checks.push("REPORTED_TCB matches the certificate".into());
    }
    if v.chip_id_checked {
        checks.push("CHIP_ID matches the certificate".into());
    }
    checks.push("certificates valid".into());
    if let Some(crl) = crl {
        chain
            .check_revocation(crl, opts.at)
            .map_err(|e| error_chain(&e))?;
        checks.push(format!("'{}' not revoked", chain.ask.label()));
    }
    let detail = serde_json::json!({
        "product": v.chain.product.name(),
        "root": match v.chain.root { Root::Amd(_) => "amd", Root::Unknown => "unknown" },
        "signing_key": v.chain.leaf_kind.to_string(),
        "tcb_checked": v.tcb_checked,
        "chip_id_checked": v.chip_id_checked,
    });
    Ok((checks.join("; "), detail, v.chain.product))
}

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

/// The product a report comes from: its CPUID fields (version 3 and later).
fn report_product(r: &AttestationReport) -> Option<Product> {
    (r.version.get() >= 3)
        .then(|| Product::from_cpuid(r.cpuid_fam_id, r.cpuid_mod_id))
        .flatten()
}

/// The components of a TCB version in `product`'s layout.
fn tcb_parts(v: u64, product: Product) -> String {
    let parts: Vec<String> = product
        .tcb_components(TcbVersion(v))
        .into_iter()
        .map(|(part, spl)| format!("{} {spl}", part.name))
        .collect();
    format!("{} ({product} layout)", parts.join(", "))
}

/// One `name: value` row per field of an SNP report. The reported TCB is also broken into its
/// components when `product` (from the report's CPUID fields or a verified chain) is known.
pub(crate) fn snp_rows(
    r: &AttestationReport,
    product: Option<Product>,
) -> Vec<(&'static str, String)> {
    let key = match r.signing_key() {
        0 => "VCEK".to_string(),
        1 => "VLEK".to_string(),
        7 => "none".to_string(),
        k => format!("reserved ({k})"),
    };
    let product = product.or_else(|| report_product(r));
    let pi = r.platform_info.get();
    let pi_names: Vec<&str> = [
        (0, "SMT_EN"),
        (1, "TSME_EN"),
        (2, "ECC_EN"),
        (3, "RAPL_DIS"),
        (4, "CIPHERTEXT_HIDING_EN"),
        (5, "ALIAS_CHECK_COMPLETE"),
        (7, "TIO_EN"),
    ]
    .into_iter()
    .filter(|(bit, _)| pi & (1 << bit) != 0)
    .map(|(_, n)| n)
    .collect();
    let mut rows = vec![
        ("type", "SEV-SNP attestation report".into()),
        ("version", r.version.get().to_string()),
        ("guest_svn", r.guest_svn.get().to_string()),
        ("policy", format!("{:#x}", r.policy.get())),
        ("vmpl", r.vmpl.get().to_string()),
        ("signing_key", key),
        ("platform_info", format!("{pi:#x}")),
        ("platform_info_flags", pi_names.join(" ")),
        ("measurement", h(&r.measurement)),
        ("report_data", h(&r.report_data)),
        ("host_data", h(&r.host_data)),
        ("family_id", h(&r.family_id)),
        ("image_id", h(&r.image_id)),
        ("id_key_digest", h(&r.id_key_digest)),
        ("author_key_digest", h(&r.author_key_digest)),
        ("report_id", h(&r.report_id)),
        ("current_tcb", format!("{:#018x}", r.current_tcb.get())),
        ("reported_tcb", format!("{:#018x}", r.reported_tcb.get())),
        ("committed_tcb", format!("{:#018x}", r.committed_tcb.get())),
        ("launch_tcb", format!("{:#018x}", r.launch_tcb.get())),
        (
            "firmware",
            format!(
                "{}.{} build {}",
                r.current_major, r.current_minor, r.current_build
            ),
        ),
        ("chip_id", h(&r.chip_id)),
    ];
    if let Some(p) = product {
        rows.push(("reported_tcb_parts", tcb_parts(r.reported_tcb.get(), p)));
        if r.signing_key() == 0 && r.chip_id.iter().any(|&b| b != 0) {
            rows.push(("vcek_url", p.kds_vcek_url(&r.chip_id, r.reported_tcb())));
        }
    }
    if r.version.get() >= 3 {
        rows.push((
            "cpuid",
            format!(
                "family {:#x} model {:#x} stepping {:#x}{}",
                r.cpuid_fam_id,
                r.cpuid_mod_id,
                r.cpuid_step,
                report_product(r).map_or(String::new(), |p| format!(" ({p})"))
            ),
        ));
    }
    if r.version.get() >= 5 {
        rows.push((
            "launch_mit_vector",
            format!("{:#018x}", r.launch_mit_vector.get()),
        ));
        rows.push((
            "current_mit_vector",
            format!("{:#018x}", r.current_mit_vector.get()),
        ));
    }
    rows
}

fn tdreport_rows(r: &TdReport) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("type", "TDX TDREPORT".to_string()),
        (
            "attributes",
            format!("{:#018x}", r.td_info.attributes.get()),
        ),
        ("xfam", format!("{:#018x}", r.td_info.xfam.get())),
        ("mrtd", h(&r.td_info.mrtd)),
        ("mrconfigid", h(&r.td_info.mrconfigid)),
        ("mrowner", h(&r.td_info.mrowner)),
        ("mrownerconfig", h(&r.td_info.mrownerconfig)),
    ];
    let names = ["rtmr0", "rtmr1", "rtmr2", "rtmr3"];
    for (n, m) in names.iter().zip(r.td_info.rtmr.iter()) {
        v.push((n, h(m)));
    }
    v.push(("report_data", h(&r.report_mac.report_data)));
    v.push(("mrseam", h(&r.tee_tcb_info.mrseam)));
    v
}

fn quote_rows(q: &TdQuote) -> Vec<(String, String)> {
    let mut v = vec![("type".to_string(), "TDX TD quote v4".to_string())];
    for line in q.body.to_string().lines() {
        if let Some((k, val)) = line.split_once(": ") {
            v.push((k.to_string(), val.to_string()));
        }
    }
    v
}

/// Displayed fields.
type Rows = Vec<(String, String)>;
/// The verification result, if one was asked for.
type Verdict = Option<Result<String, String>>;

/// Runs `vmm-cli report`.
pub(crate) fn run(a: &ReportArgs) -> Result<Outcome, CliError> {
    let bytes = util::read("report", &a.file)?;
    let ev = parse(&bytes).map_err(|e| cli_err!("report '{}': {e}", a.file.display()))?;
    let chain = a.chain.as_deref().map(read_chain).transpose()?;
    let opts = VerifyOptions {
        at: Some(a.at.map_or_else(std::time::SystemTime::now, x509::unix_time)),
        allow_unknown_root: a.allow_unknown_root,
    };
    let crl = a
        .crl
        .as_deref()
        .map(|p| {
            let b = util::read("revocation list", p)?;
            AmdCrl::parse(&b)
                .map_err(|e| cli_err!("revocation list '{}': {}", p.display(), error_chain(&e)))
        })
        .transpose()?;
    if crl.is_some() && matches!(chain, Some(Chain::Sev(_))) {
        return Err(cli_err!(
            "--crl checks AMD's X.509 chain; SEV-format certificates have no revocation list"
        ));
    }
    let mut detail = None;
    let (rows, verdict): (Rows, Verdict) = match &ev {
        Evidence::Snp(r) => {
            let mut product = None;
            let verdict = if let Some(Chain::Amd(c)) = &chain {
                Some(verify_amd(r, c, &opts, crl.as_ref()).map(|(msg, d, p)| {
                    detail = Some(d);
                    product = Some(p);
                    msg
                }))
            } else if let Some(Chain::Sev(c)) = &chain {
                Some(
                    verify_report(r, c, None)
                        .map(|()| "signature verified against the given ARK/ASK/VCEK".into())
                        .map_err(|e| e.to_string()),
                )
            } else if a.sim_chain {
                let c = sim_snp_chain(a.seed);
                Some(
                    verify_report(r, &c, None)
                        .map(|()| "signature verified against the simulated ARK/ASK/VCEK".into())
                        .map_err(|e| format!("{e} (simulated chain)")),
                )
            } else {
                None
            };
            let rows = snp_rows(r, product)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            (rows, verdict)
        }
        Evidence::Quote(q) => {
            if chain.is_some() {
                return Err(cli_err!(
                    "--chain verifies SNP reports; a TD quote is verified with Intel DCAP (or --sim-chain for simulated quotes)"
                ));
            }
            let verdict = a.sim_chain.then(|| {
                sim_tdx_module(a.seed)
                    .verify_quote(q)
                    .map(|()| "quote signature verified against the simulated quoting key".into())
                    .map_err(|e| format!("{e} (simulated quoting key)"))
            });
            (quote_rows(q), verdict)
        }
        Evidence::TdReport(r) => {
            if chain.is_some() {
                return Err(cli_err!(
                    "--chain verifies SNP reports; a TDREPORT is MACed by the CPU (use --sim-chain for simulated reports)"
                ));
            }
            let verdict = a.sim_chain.then(|| {
                sim_tdx_module(a.seed)
                    .verify_report(r)
                    .map(|()| "TDREPORT MAC verified against the simulated TDX module".into())
                    .map_err(|e| format!("{e} (simulated TDX module)"))
            });
            let rows = tdreport_rows(r)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            (rows, verdict)
        }
    };
    let (status, text, outcome) = match &verdict {
        None => (
            "not verified",
            "not verified (give --chain or --sim-chain)".to_string(),
            Outcome::Success,
        ),
        Some(Ok(m)) => ("verified", m.clone(), Outcome::Success),
        Some(Err(m)) => (
            "failed",
            format!("verification failed: {m}"),
            Outcome::Negative,
        ),
    };
    if a.json {
        let mut obj = serde_json::Map::new();
        for (k, v) in &rows {
            obj.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let mut verification = serde_json::json!({"status": status, "message": text});
        if let (Some(serde_json::Value::Object(d)), Some(v)) =
            (detail, verification.as_object_mut())
        {
            v.extend(d);
        }
        obj.insert("verification".into(), verification);
        print_json(&serde_json::Value::Object(obj));
    } else {
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max(9);
        for (k, v) in &rows {
            println!("{k:w$}  {v}");
        }
        println!("{:w$}  {text}", "signature");
    }
    Ok(outcome)
}
