//! Writes the committed seed corpora under `fuzz/corpus/<target>/`, from the project's own
//! builders (synthetic firmware images, hash tables, logs) and AMD's built-in certificates.
//! Deterministic: running it again rewrites the same files.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example write_seeds`

use std::path::Path;
use std::sync::Arc;

use kvm_coco::measure::hashes::{DirectBoot, SevHashes};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, measure, synthetic};
use kvm_coco::sim::tdx::report::{QuoteHeaderV4, TdQuote, TdQuoteBody, TdReport};
use psp_driver::owner::x509::{Product, TableCert};
use psp_driver::report::AttestationReport;
use psp_driver::sim::{PhysMem, SimConfig, SimFirmware};
use zerocopy::{FromZeros, IntoBytes};

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A certificate table (`GUID ‖ offset ‖ length` entries, zero terminator, then the
/// certificates).
fn cert_table(certs: &[(TableCert, &[u8])]) -> Vec<u8> {
    let head = (certs.len() + 1) * 24;
    let mut t = Vec::new();
    let mut off = head;
    for (kind, der) in certs {
        t.extend_from_slice(&kind.guid());
        t.extend_from_slice(&(off as u32).to_le_bytes());
        t.extend_from_slice(&(der.len() as u32).to_le_bytes());
        off += der.len();
    }
    t.extend_from_slice(&[0u8; 24]);
    for (_, der) in certs {
        t.extend_from_slice(der);
    }
    t
}

/// One host_ioctl call: `[target][request][sub lo][sub hi][patch][len lo][len hi][bytes]`.
fn call(target: u8, req: u8, sub: u16, patch: u8, bytes: &[u8]) -> Vec<u8> {
    let mut c = vec![target, req];
    c.extend_from_slice(&sub.to_le_bytes());
    c.push(patch);
    c.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    c.extend_from_slice(bytes);
    c
}

fn main() {
    // Firmware images.
    let images = [
        ("syn64k", synthetic::syn64k()),
        ("syn128k", synthetic::syn128k()),
        ("synnohash", synthetic::synnohash()),
        ("synnoasev", synthetic::synnoasev()),
    ];
    for (name, img) in &images {
        put("firmware", name, img);
    }
    // SYN64K with a 4 GiB TempMem section to extend into MRTD: a valid image whose plan
    // takes tens of seconds to measure (the firmware target measures only small plans).
    let mut big = synthetic::SyntheticImage::syn64k();
    if let Some(sections) = big.tdvf.as_mut() {
        sections.push(synthetic::SyntheticTdvfSection {
            data_offset: 0,
            raw_size: 0,
            memory_address: 1 << 32,
            memory_data_size: 1 << 32,
            section_type: 3,
            attributes: 1,
        });
    }
    put("firmware", "tdvf-4gib-mr-extend", &big.build().unwrap());

    // Kernel hash tables.
    for (i, (k, c)) in [(&b"bzImage"[..], None), (b"", Some("console=ttyS0"))]
        .iter()
        .enumerate()
    {
        let h = SevHashes::compute(&DirectBoot {
            kernel: k,
            initrd: Some(b"initrd"),
            cmdline: *c,
        });
        put("kernel_hashes", &format!("table{i}"), &h.table());
    }

    // Launch logs of the synthetic image, one per technology.
    let opts = MeasureOptions {
        log: true,
        progress: None,
    };
    for (img_name, img) in &images {
        let fw = FirmwareImage::parse(img).unwrap();
        let inputs = PlanInputs {
            vcpus: 2,
            vcpu_sig: kvm_coco::measure::vcpu::cpu_type_sig("EPYC-v4"),
            ..PlanInputs::new(&fw)
        };
        for (name, plan) in [
            ("sev", LaunchPlan::sev(&inputs)),
            ("sev_es", LaunchPlan::sev_es(&inputs)),
            ("snp", LaunchPlan::snp(&inputs)),
            ("tdx", LaunchPlan::tdx(&fw)),
        ] {
            if let Ok(p) = plan
                && let Some(log) = measure(&p, &opts).ok().and_then(|m| m.log)
            {
                put(
                    "launch_log",
                    &format!("{img_name}_{name}"),
                    log.to_json().as_bytes(),
                );
            }
        }
    }

    // SNP reports: zeroed, and with the version and signature algorithm set.
    let mut r = AttestationReport::new_zeroed();
    put("snp_report", "zero", r.as_bytes());
    r.version = 3.into();
    r.signature_algo = 1.into();
    put("snp_report", "v3_ecdsa", r.as_bytes());

    // ID block + ID auth: zeroed and with the version set (ID block version 1).
    let mut id = vec![0u8; 96 + 4096];
    put("id_block", "zero", &id);
    id[0x40] = 1;
    put("id_block", "version1", &id);

    // AMD's certificates, singly and as a table.
    for p in [Product::Milan, Product::Genoa, Product::Turin] {
        let (ark, ask) = (p.builtin_ark(), p.builtin_ask());
        let name = format!("{p:?}").to_lowercase();
        put("x509", &format!("{name}_ark.der"), ark.der());
        put("x509", &format!("{name}_ask.der"), ask.der());
        put(
            "cert_table",
            &name,
            &cert_table(&[(TableCert::Ark, ark.der()), (TableCert::Ask, ask.der())]),
        );
    }

    // /dev/sev: PLATFORM_STATUS-sized bytes and the software firmware's PDH ‖ PEK ‖ OCA ‖ CEK.
    let fw = SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new()));
    let c = fw.certs();
    let mut chain = Vec::new();
    for cert in [c.pdh, c.pek, c.oca, c.cek] {
        chain.extend_from_slice(cert.as_bytes());
    }
    put("dev_sev", "pdh_chain", &chain);
    put(
        "dev_sev",
        "status",
        &[1, 55, 1, 0, 0x20, 0, 0, 0, 2, 0, 0, 0],
    );

    // TDX: a zeroed TDREPORT and a v4 quote.
    put("tdx_report", "zero_report", TdReport::zeroed().as_bytes());
    let quote = TdQuote {
        header: QuoteHeaderV4::td_v4(),
        body: TdQuoteBody::from_report(&TdReport::zeroed()),
        signature: vec![0u8; 64],
    };
    put("tdx_report", "quote_v4", &quote.to_bytes());

    // host_ioctl: CHECK_EXTENSION on /dev/kvm; SEV INIT2 / SNP LAUNCH_START / TDX
    // CAPABILITIES on the VM; a /dev/sev PLATFORM_STATUS.
    let init2 = [0u8; 48];
    let mut s = vec![0u8, 3];
    s.extend(call(0, 0, 0xEA, 0, &[]));
    put("host_ioctl", "check_extension", &s);
    for (ty, name) in [(0u8, "sev_init2"), (1, "sev_es_init2"), (2, "snp_init2")] {
        let mut s = vec![ty, 3];
        s.extend(call(1, 0, 22, 0, &init2));
        s.extend(call(1, 0, 100, 0, &[0u8; 64]));
        s.extend(call(2, 2, 0, 0, &[]));
        put("host_ioctl", name, &s);
    }
    let mut s = vec![3u8, 1];
    s.extend(call(1, 0, 0, 0, &[0u8; 2056]));
    s.extend(call(1, 0, 1, 0x80, &[0u8; 1024]));
    put("host_ioctl", "tdx_caps_init_vm", &s);
    let mut s = vec![2u8, 0];
    s.extend(call(3, 0, 1, 0, &[0u8; 12]));
    put("host_ioctl", "sev_platform_status", &s);
}
