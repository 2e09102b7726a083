//! A VMM that owns its VM launches it through kvm-coco: the VM, guest RAM, guest_memfds,
//! memory slots and vCPUs are made here with kvm-ioctls, and kvm-coco's launcher works over
//! them ([`BorrowedVm`], [`GuestRam`], [`BorrowedVcpu`]), issuing only the
//! confidential-computing calls.
//!
//! - SNP, with a kernel and an initrd: guest RAM is a shared mapping per slot plus a
//!   guest_memfd (`KVM_CREATE_GUEST_MEMFD`, `KVM_SET_USER_MEMORY_REGION2`); the guest asks
//!   for its attestation report, whose `MEASUREMENT` must equal the offline calculation.
//! - TDX: the same with one vCPU; the TD asks for its TDREPORT, whose `MRTD` must equal the
//!   offline calculation.
//! - SEV-ES: plain memory slots (no guest_memfd); the guest owner checks `LAUNCH_MEASURE`
//!   against the offline calculation.
//!
//! Where this machine's KVM does not offer the VM type, the example starts the software host
//! (`kvm_coco::sim::host`) and serves its own thread, so the same system calls are answered
//! by the models.
//!
//! `cargo run -p kvm-coco --example own_vm`

use std::error::Error;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use kvm_bindings::{
    KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, kvm_create_guest_memfd,
    kvm_memory_attributes, kvm_userspace_memory_region2,
};
use kvm_coco::launch::{
    BorrowedVcpu, BorrowedVm, GuestRam, InitParams, Launch, PlatformMeasurement, SevEsInit,
    SevSession, SnpInit, plan_memory,
};
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Access, Exit, GuestMapping, MapGpaReply, TdVmCallStatus, TdxExit, VmType};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use psp_driver::report::AttestationReport;
use zerocopy::{FromBytes, IntoBytes};

type Res<T> = Result<T, Box<dyn Error>>;

/// Guest RAM the SNP guest shares with the host for its report request.
const SHARED: u64 = 0x100_0000;
const SHARED_LEN: u64 = 0x8000;

/// The software host serving this thread, when this machine's KVM does not offer every type
/// of `vm_types` (`None` when it does: the real kernel and firmware answer).
pub fn host_for(vm_types: &[VmType]) -> Res<Option<SoftwareHost>> {
    let offered = kvm_coco::Kvm::open()
        .map(|k| vm_types.iter().all(|&t| k.supported_vm_types().contains(t)))
        .unwrap_or(false);
    if offered {
        return Ok(None);
    }
    let host = SoftwareHost::builder().start()?;
    host.serve_current_thread()?;
    Ok(Some(host))
}

/// The VMM's guest RAM: one shared mapping per slot, a guest_memfd per slot for SNP and TDX.
#[derive(Debug)]
pub struct VmmMemory {
    slots: Vec<(u64, GuestMapping, Option<OwnedFd>)>,
}

impl VmmMemory {
    /// Registers `ranges` (gpa, size) with `vm_fd` as slots 0, 1, …, each backed by a fresh
    /// shared mapping and, with `guest_memfd`, bound to a guest_memfd of its size.
    pub fn new(vm_fd: &VmFd, ranges: &[(u64, u64)], guest_memfd: bool) -> Res<Self> {
        let mut slots = Vec::new();
        for (slot, &(gpa, size)) in ranges.iter().enumerate() {
            let mapping = GuestMapping::anonymous(usize::try_from(size)?)?;
            let mut region = kvm_userspace_memory_region2 {
                slot: u32::try_from(slot)?,
                guest_phys_addr: gpa,
                memory_size: size,
                userspace_addr: mapping.host_addr(),
                ..Default::default()
            };
            let gmem = if guest_memfd {
                let fd = vm_fd.create_guest_memfd(kvm_create_guest_memfd {
                    size,
                    ..Default::default()
                })?;
                // SAFETY: KVM_CREATE_GUEST_MEMFD returned a new fd owned by nothing else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                region.flags = KVM_MEM_GUEST_MEMFD;
                region.guest_memfd = u32::try_from(fd.as_raw_fd())?;
                Some(fd)
            } else {
                None
            };
            // SAFETY: the mapping is kept in `self.slots`, which outlives the VM in this
            // program (the VM fd is dropped first by the callers below).
            unsafe { vm_fd.set_user_memory_region2(region) }?;
            slots.push((gpa, mapping, gmem));
        }
        Ok(Self { slots })
    }

    /// The description kvm-coco's launcher needs: where each range lives.
    pub fn guest_ram(&self) -> Vec<GuestRam> {
        self.slots
            .iter()
            .map(|(gpa, m, gmem)| {
                // SAFETY: the mapping lives in `self`, which the callers keep for longer
                // than the launch.
                let r = unsafe { GuestRam::new(*gpa, m.len() as u64, m.host_addr()) };
                if gmem.is_some() {
                    r.with_guest_memfd()
                } else {
                    r
                }
            })
            .collect()
    }
}

/// What an SNP launch over the VMM's VM produced.
#[derive(Debug)]
pub struct SnpOutcome {
    /// The launch log's final digest (what the host handed over).
    pub expected: Vec<u8>,
    /// The offline calculation of the same plan.
    pub offline: Vec<u8>,
    /// `MEASUREMENT` of the attestation report the guest obtained.
    pub reported: PlatformMeasurement,
}

/// The firmware, kernel and initrd both launches measure.
#[derive(Debug)]
pub struct Image {
    firmware: Vec<u8>,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
}

impl Image {
    /// A small synthetic OVMF image with an SEV hash table, a kernel and an initrd.
    pub fn synthetic() -> Self {
        Self {
            firmware: kvm_coco::measure::synthetic::syn64k(),
            kernel: (0..10000u32).map(|i| ((13 * i + 5) % 256) as u8).collect(),
            initrd: vec![0xab; 3000],
        }
    }

    fn inputs<'a>(&'a self, fw: &'a FirmwareImage<'a>, vcpus: u32) -> PlanInputs<'a> {
        PlanInputs {
            vcpus,
            vcpu_sig: kvm_coco::measure::vcpu::cpu_type_sig("EPYC-v4"),
            boot: Some(DirectBoot {
                kernel: &self.kernel,
                initrd: Some(&self.initrd),
                cmdline: Some("console=ttyS0"),
            }),
            ..PlanInputs::new(fw)
        }
    }
}

fn offline(plan: &LaunchPlan<'_>) -> Res<Vec<u8>> {
    let m = kvm_coco::measure::measure(
        plan,
        &MeasureOptions {
            log: false,
            progress: None,
        },
    )?;
    Ok(m.digest.as_bytes().to_vec())
}

fn open_sev() -> Res<File> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/sev")?)
}

/// Launches an SNP guest with a kernel and an initrd over a VM, memory and vCPUs made here
/// with kvm-ioctls, then runs vCPU 0 with a guest program (on the software host) that asks
/// for its attestation report.
pub fn launch_snp(host: Option<&SoftwareHost>, image: &Image, vcpus: u32) -> Res<SnpOutcome> {
    let fw = FirmwareImage::parse(&image.firmware)?;
    let plan = LaunchPlan::snp(&image.inputs(&fw, vcpus))?;

    // The VMM: VM, /dev/sev, guest RAM with a guest_memfd per slot.
    let kvm = Kvm::new()?;
    let vm_fd = kvm.create_vm_with_type(u64::from(VmType::Snp.abi_value()))?;
    let sev = open_sev()?;
    let mut ranges = plan_memory(&plan);
    ranges.push((SHARED, SHARED_LEN));
    let memory = VmmMemory::new(&vm_fd, &ranges, true)?;

    // kvm-coco over the borrowed VM.
    let backend = BorrowedVm::new(&vm_fd, VmType::Snp, Some(sev.as_fd()), memory.guest_ram())?;
    let mut launch = Launch::new(backend, InitParams::Snp(SnpInit::default()))?;
    // vCPUs after KVM_SEV_INIT2, as the kernel requires.
    let mut vcpu_fds: Vec<VcpuFd> = (0..vcpus)
        .map(|i| vm_fd.create_vcpu(u64::from(i)))
        .collect::<Result<_, _>>()?;
    for (id, fd) in (0..).zip(vcpu_fds.iter_mut()) {
        launch.adopt_vcpu(BorrowedVcpu::new(fd, id, VmType::Snp))?;
    }
    let mut launch = launch.start()?;
    launch.add_plan(&plan)?;
    let launch = launch.measure()?.finish()?;
    let expected = launch.expected_measurement().to_vec();
    let (backend, mut vcpus) = launch.into_parts();

    // The guest asks for its report; the VMM answers its page-state changes.
    let reported = match host {
        Some(host) => {
            host.load_program(
                &vcpus[0],
                [
                    GuestOp::SnpReport {
                        report_data: [0x5a; 64],
                        certs_gpa: SHARED,
                        npages: 0,
                    },
                    GuestOp::Halt,
                ],
            )?;
            run_until_halt(&vm_fd, &mut vcpus[0])?;
            let report = host
                .outcomes(&vcpus[0])?
                .into_iter()
                .find_map(|o| match o {
                    GuestOutcome::SnpReport {
                        report: Some(r), ..
                    } => AttestationReport::read_from_bytes(&r).ok(),
                    _ => None,
                })
                .ok_or("the guest obtained no report")?;
            PlatformMeasurement::from_snp_report(&report)
        }
        // On SNP hardware no guest program runs here: only a real guest's report has it.
        None => PlatformMeasurement::NotObservable,
    };
    // The launch is over: the vCPU and VM fds are the VMM's again.
    drop((backend, vcpus));
    drop(vcpu_fds);
    drop(vm_fd);
    drop(memory);
    Ok(SnpOutcome {
        expected,
        offline: offline(&plan)?,
        reported,
    })
}

/// Runs `vcpu` until it halts, converting memory as the guest asks (the VMM's own
/// `KVM_SET_MEMORY_ATTRIBUTES`).
fn run_until_halt(vm_fd: &VmFd, vcpu: &mut BorrowedVcpu<'_>) -> Res<()> {
    use kvm_coco::launch::backend::LaunchVcpu;
    let set = |gpa: u64, size: u64, private: bool| {
        vm_fd.set_memory_attributes(kvm_memory_attributes {
            address: gpa,
            size,
            attributes: if private {
                u64::from(KVM_MEMORY_ATTRIBUTE_PRIVATE)
            } else {
                0
            },
            flags: 0,
        })
    };
    for _ in 0..64 {
        match vcpu.run()? {
            Exit::MapGpaRange(mut m) => {
                set(m.gpa, m.size(), m.access() == Access::Private)?;
                m.reply(MapGpaReply::Success);
            }
            Exit::MemoryFault(f) => set(f.gpa, f.size, f.access() == Access::Private)?,
            Exit::Tdx(TdxExit::GetQuote(mut q)) => q.reply(TdVmCallStatus::Success),
            Exit::Hlt => return Ok(()),
            other => return Err(format!("unexpected exit {other:?}").into()),
        }
    }
    Err("the guest did not halt".into())
}

/// Launches a TD over a VM, memory (guest_memfd per slot) and a vCPU made here with
/// kvm-ioctls; on the software host the TD then asks for its TDREPORT (GetQuote), whose MRTD
/// must equal the offline calculation. Returns the same outcome as [`launch_snp`].
pub fn launch_tdx(host: Option<&SoftwareHost>, image: &Image) -> Res<SnpOutcome> {
    use kvm_coco::launch::TdxInit;
    let fw = FirmwareImage::parse(&image.firmware)?;
    let plan = LaunchPlan::tdx(&fw)?;

    let kvm = Kvm::new()?;
    let vm_fd = kvm.create_vm_with_type(u64::from(VmType::Tdx.abi_value()))?;
    let mut ranges = plan_memory(&plan);
    ranges.push((SHARED, SHARED_LEN));
    let memory = VmmMemory::new(&vm_fd, &ranges, true)?;

    // No /dev/sev for a TD.
    let backend = BorrowedVm::new(&vm_fd, VmType::Tdx, None, memory.guest_ram())?;
    let mut launch = Launch::new(backend, InitParams::Tdx(TdxInit::default()))?;
    // vCPUs after KVM_TDX_INIT_VM; adopting one issues KVM_TDX_INIT_VCPU on it.
    let mut vcpu_fd = vm_fd.create_vcpu(0)?;
    launch.adopt_vcpu(BorrowedVcpu::new(&mut vcpu_fd, 0, VmType::Tdx))?;
    let mut launch = launch.start()?;
    launch.add_plan(&plan)?;
    let launch = launch.measure()?.finish()?;
    let expected = launch.expected_measurement().to_vec();
    let (backend, mut vcpus) = launch.into_parts();

    let reported = match host {
        Some(host) => {
            host.load_program(
                &vcpus[0],
                [GuestOp::GetQuote {
                    gpa: SHARED,
                    size: 0x2000,
                    report_data: [0x5a; 64],
                }],
            )?;
            run_until_halt(&vm_fd, &mut vcpus[0])?;
            host.outcomes(&vcpus[0])?
                .into_iter()
                .find_map(|o| match o {
                    GuestOutcome::TdReport(r) => PlatformMeasurement::from_td_report(&r),
                    _ => None,
                })
                .ok_or("the TD obtained no TDREPORT")?
        }
        None => PlatformMeasurement::NotObservable,
    };
    drop((backend, vcpus));
    drop(vm_fd);
    drop(memory);
    Ok(SnpOutcome {
        expected,
        offline: offline(&plan)?,
        reported,
    })
}

/// Launches an SEV-ES guest over a VM with plain memory slots made here, with the guest
/// owner's session; the owner checks `LAUNCH_MEASURE` against the offline calculation.
/// Returns whether it matched (and that a wrong digest does not).
pub fn launch_sev_es(image: &Image, vcpus: u32) -> Res<bool> {
    use psp_driver::owner::cert::SevCert;
    use psp_driver::owner::session::{FwVersion, OwnerSession, verify_launch_measure};
    use psp_driver::{DevSev, Platform};
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    let fw = FirmwareImage::parse(&image.firmware)?;
    let plan = LaunchPlan::sev_es(&image.inputs(&fw, vcpus))?;
    let digest: [u8; 32] = offline(&plan)?
        .try_into()
        .map_err(|_| "an SEV-ES digest has 32 bytes")?;

    // The guest owner's session, made from the platform's PDH.
    let dev = DevSev::open()?;
    let pdh =
        SevCert::read_from_bytes(&dev.pdh_cert_export()?.pdh_cert).map_err(|_| "malformed PDH")?;
    let st = dev.platform_status()?;
    let fwv = FwVersion {
        api_major: st.api_major,
        api_minor: st.api_minor,
        build: st.build,
    };
    let policy = 0x5;
    let owner = OwnerSession::new(&mut ChaCha20Rng::from_seed([3; 32]), &pdh, policy)?;
    let params = InitParams::SevEs(SevEsInit {
        policy,
        session: Some(SevSession {
            dh_cert: owner.dh_cert().as_bytes().to_vec(),
            session: owner.session().as_bytes().to_vec(),
        }),
        ..SevEsInit::default()
    });

    // The VMM: VM, /dev/sev, plain memory slots.
    let kvm = Kvm::new()?;
    let vm_fd = kvm.create_vm_with_type(u64::from(VmType::SevEs.abi_value()))?;
    let sev = open_sev()?;
    let memory = VmmMemory::new(&vm_fd, &plan_memory(&plan), false)?;

    let backend = BorrowedVm::new(&vm_fd, VmType::SevEs, Some(sev.as_fd()), memory.guest_ram())?;
    let mut launch = Launch::new(backend, params)?;
    let mut vcpu_fds: Vec<VcpuFd> = (0..vcpus)
        .map(|i| vm_fd.create_vcpu(u64::from(i)))
        .collect::<Result<_, _>>()?;
    for (id, fd) in (0..).zip(vcpu_fds.iter_mut()) {
        launch.adopt_vcpu(BorrowedVcpu::new(fd, id, VmType::SevEs))?;
    }
    let mut launch = launch.start()?;
    launch.add_plan(&plan)?;
    let launch = launch.measure()?;
    let m = *launch
        .sev_launch_measure()
        .ok_or("no LAUNCH_MEASURE for SEV-ES")?;
    let launch = launch.finish()?;
    assert_eq!(
        launch.platform_measurement(),
        PlatformMeasurement::LaunchMeasure(m)
    );
    assert_eq!(launch.expected_measurement(), digest);
    drop(launch);

    let mut blob = [0u8; 48];
    blob[..32].copy_from_slice(&m.measure);
    blob[32..].copy_from_slice(&m.mnonce);
    let ok = verify_launch_measure(&owner.keys().tik, fwv, policy, &digest, &blob).is_ok();
    let mut wrong = digest;
    wrong[0] ^= 1;
    let wrong_refused =
        verify_launch_measure(&owner.keys().tik, fwv, policy, &wrong, &blob).is_err();
    drop(vcpu_fds);
    drop(vm_fd);
    drop(memory);
    Ok(ok && wrong_refused)
}

fn shown(m: &PlatformMeasurement) -> String {
    match m {
        PlatformMeasurement::SnpReport(v) | PlatformMeasurement::TdReport(v) => hex::encode(v),
        other => format!("{other:?}"),
    }
}

/// Launches SNP, SEV-ES and TDX guests over VMs this program owns.
pub fn main() -> Res<()> {
    let image = Image::synthetic();
    let host = host_for(&[VmType::Snp, VmType::SevEs, VmType::Tdx])?;
    if host.is_some() {
        eprintln!("this KVM lacks SNP, SEV-ES or TDX: the software host serves this thread");
    }
    let out = launch_snp(host.as_ref(), &image, 2)?;
    println!("SNP expected  {}", hex::encode(&out.expected));
    println!("SNP offline   {}", hex::encode(&out.offline));
    println!(
        "SNP platform  {} ({})",
        shown(&out.reported),
        out.reported.source()
    );
    assert_eq!(out.expected, out.offline);
    if out.reported != PlatformMeasurement::NotObservable {
        assert_eq!(out.reported.matches(&out.offline), Some(true));
    }
    let ok = launch_sev_es(&image, 2)?;
    println!("SEV-ES LAUNCH_MEASURE verified by the guest owner: {ok}");
    assert!(ok);
    let out = launch_tdx(host.as_ref(), &image)?;
    println!("TDX expected  {}", hex::encode(&out.expected));
    println!(
        "TDX platform  {} ({})",
        shown(&out.reported),
        out.reported.source()
    );
    assert_eq!(out.expected, out.offline);
    if out.reported != PlatformMeasurement::NotObservable {
        assert_eq!(out.reported.matches(&out.offline), Some(true));
    }
    Ok(())
}
