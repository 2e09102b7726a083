//! QEMU's production behaviours in the launcher, exercised by a backend that injects the
//! kernel's transient answers into the simulated one: `EAGAIN` and partial progress of the
//! in/out populate commands, `EINTR` with progress, `EAGAIN` from `KVM_TDX_INIT_VM`, a
//! too-small `KVM_TDX_CAPABILITIES` buffer, and a kernel that stops without consuming the
//! range.

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::cell::Cell;

use kvm_coco::launch::backend::{Backend, Remaining, SnpPageType, Source};
use kvm_coco::launch::params::{HostLimits, SevSession, SnpIdentity};
use kvm_coco::launch::{
    InitParams, Launch, LaunchError, MAX_RETRIES, SimBackend, SimVcpu, SnpInit, TdxInit,
};
use kvm_coco::measure::{FirmwareImage, LaunchPlan};
use kvm_coco::ops::{EncryptOpError, FirmwareStatus};
use kvm_coco::{Errno, VmType};
use kvm_coco_uapi::{
    KvmSevInit, KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, TdxCapabilitiesBuf, TdxInitVmBuf,
};
use measure_common::{SYN64K_MRTD, amd_inputs, offline, ssm_output};

/// What to inject.
#[derive(Debug, Default)]
struct Faults {
    /// Populate calls answered `EAGAIN` before any progress (per region, first call).
    eagain_first: bool,
    /// Populate calls that consume one page only.
    one_page_at_a_time: bool,
    /// TDX INIT_MEM_REGION: `EINTR` after one page.
    eintr_after_one: bool,
    /// Populate calls that return success without progress.
    stuck: bool,
    /// Populate calls that always answer `EAGAIN`.
    always_eagain: bool,
    /// `KVM_TDX_INIT_VM` answers `EAGAIN` this many times first.
    init_vm_eagain: u32,
    /// `KVM_TDX_CAPABILITIES` answers `E2BIG` below this capacity.
    caps_min: usize,
}

#[derive(Debug)]
struct Flaky {
    inner: SimBackend,
    f: Faults,
    last_gpa: Cell<Option<u64>>,
    calls: Cell<u32>,
    caps_calls: Cell<u32>,
}

impl Flaky {
    fn err(&self, command: &'static str, errno: i32) -> EncryptOpError {
        EncryptOpError {
            command,
            errno: Errno::from_raw(errno),
            firmware: FirmwareStatus::None,
            vm_type: self.inner.vm_type(),
            hint: None,
        }
    }

    fn new(inner: SimBackend, f: Faults) -> Self {
        Self {
            inner,
            f,
            last_gpa: Cell::new(None),
            calls: Cell::new(0),
            caps_calls: Cell::new(0),
        }
    }
}

/// Runs `op` on a possibly shortened range and applies the injected answer.
fn populate(
    f: &Faults,
    last_gpa: &Cell<Option<u64>>,
    calls: &Cell<u32>,
    vm_type: VmType,
    command: &'static str,
    range: &mut Remaining,
    mut op: impl FnMut(&mut Remaining) -> Result<(), EncryptOpError>,
) -> Result<(), EncryptOpError> {
    let err = |errno| EncryptOpError {
        command,
        errno: Errno::from_raw(errno),
        firmware: FirmwareStatus::None,
        vm_type,
        hint: None,
    };
    calls.set(calls.get() + 1);
    if f.always_eagain {
        return Err(err(libc::EAGAIN));
    }
    if f.stuck {
        return Ok(());
    }
    if f.eagain_first && last_gpa.get() != Some(range.gpa) {
        last_gpa.set(Some(range.gpa));
        return Err(err(libc::EAGAIN));
    }
    last_gpa.set(Some(range.gpa));
    if f.one_page_at_a_time || f.eintr_after_one {
        let mut one = Remaining {
            gpa: range.gpa,
            len: 4096.min(range.len),
        };
        let rest = range.len - one.len;
        op(&mut one)?;
        range.gpa = one.gpa;
        range.len = one.len + rest;
        if f.eintr_after_one && range.len > 0 {
            return Err(err(libc::EINTR));
        }
        return Ok(());
    }
    op(range)
}

impl Backend for Flaky {
    type Vcpu = SimVcpu;

    fn vm_type(&self) -> VmType {
        self.inner.vm_type()
    }
    fn host_limits(&self) -> Result<HostLimits, LaunchError> {
        self.inner.host_limits()
    }
    fn add_memory(&mut self, gpa: u64, size: u64) -> Result<(), LaunchError> {
        self.inner.add_memory(gpa, size)
    }
    fn set_private(&mut self, gpa: u64, size: u64, private: bool) -> Result<(), LaunchError> {
        self.inner.set_private(gpa, size, private)
    }
    fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError> {
        self.inner.read_shared(gpa, buf)
    }
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        self.inner.write_shared(gpa, data)
    }
    fn enable_map_gpa_range_exits(&mut self) -> Result<(), LaunchError> {
        self.inner.enable_map_gpa_range_exits()
    }
    fn enable_split_irqchip(&mut self) -> Result<(), LaunchError> {
        self.inner.enable_split_irqchip()
    }
    fn create_vcpu(&mut self, id: u32) -> Result<SimVcpu, LaunchError> {
        self.inner.create_vcpu(id)
    }
    fn sev_init2(&mut self, init: &mut KvmSevInit) -> Result<(), EncryptOpError> {
        self.inner.sev_init2(init)
    }
    fn sev_launch_start(&mut self, p: u32, s: Option<&SevSession>) -> Result<u32, EncryptOpError> {
        self.inner.sev_launch_start(p, s)
    }
    fn sev_launch_update_data(
        &mut self,
        g: u64,
        l: u64,
        s: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        self.inner.sev_launch_update_data(g, l, s)
    }
    fn sev_launch_update_vmsa(&mut self) -> Result<(), EncryptOpError> {
        self.inner.sev_launch_update_vmsa()
    }
    fn sev_launch_measure(&mut self) -> Result<Vec<u8>, EncryptOpError> {
        self.inner.sev_launch_measure()
    }
    fn sev_launch_secret(&mut self, h: &[u8], p: &[u8], g: u64) -> Result<(), EncryptOpError> {
        self.inner.sev_launch_secret(h, p, g)
    }
    fn sev_launch_finish(&mut self) -> Result<(), EncryptOpError> {
        self.inner.sev_launch_finish()
    }
    fn sev_dbg_decrypt(&mut self, g: u64, b: &mut [u8]) -> Result<(), EncryptOpError> {
        self.inner.sev_dbg_decrypt(g, b)
    }
    fn sev_dbg_encrypt(&mut self, g: u64, d: &[u8]) -> Result<(), EncryptOpError> {
        self.inner.sev_dbg_encrypt(g, d)
    }
    fn snp_enable_req_certs(&mut self) -> Result<(), EncryptOpError> {
        self.inner.snp_enable_req_certs()
    }
    fn snp_launch_start(&mut self, s: &mut KvmSevSnpLaunchStart) -> Result<(), EncryptOpError> {
        self.inner.snp_launch_start(s)
    }
    fn snp_launch_update(
        &mut self,
        range: &mut Remaining,
        t: SnpPageType,
        src: Source<'_>,
        mut cpuid_out: Option<&mut [u8; 4096]>,
    ) -> Result<(), EncryptOpError> {
        let vm_type = self.inner.vm_type();
        let inner = &mut self.inner;
        populate(
            &self.f,
            &self.last_gpa,
            &self.calls,
            vm_type,
            "KVM_SEV_SNP_LAUNCH_UPDATE",
            range,
            |r| inner.snp_launch_update(r, t, src, cpuid_out.as_deref_mut()),
        )
    }
    fn snp_launch_finish(
        &mut self,
        f: &mut KvmSevSnpLaunchFinish,
        id: Option<&SnpIdentity>,
    ) -> Result<(), EncryptOpError> {
        self.inner.snp_launch_finish(f, id)
    }
    fn tdx_capabilities(&mut self, buf: &mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError> {
        self.caps_calls.set(self.caps_calls.get() + 1);
        if buf.capacity() < self.f.caps_min {
            return Err(self.err("KVM_TDX_CAPABILITIES", libc::E2BIG));
        }
        self.inner.tdx_capabilities(buf)
    }
    fn tdx_init_vm(&mut self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError> {
        if self.f.init_vm_eagain > 0 {
            self.f.init_vm_eagain -= 1;
            return Err(self.err("KVM_TDX_INIT_VM", libc::EAGAIN));
        }
        self.inner.tdx_init_vm(init)
    }
    fn tdx_init_vcpu(&mut self, v: &SimVcpu, rcx: u64) -> Result<(), EncryptOpError> {
        self.inner.tdx_init_vcpu(v, rcx)
    }
    fn tdx_init_mem_region(
        &mut self,
        v: &SimVcpu,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        let vm_type = self.inner.vm_type();
        let inner = &mut self.inner;
        populate(
            &self.f,
            &self.last_gpa,
            &self.calls,
            vm_type,
            "KVM_TDX_INIT_MEM_REGION",
            range,
            |r| inner.tdx_init_mem_region(v, r, measure, src),
        )
    }
    fn tdx_finalize_vm(&mut self) -> Result<(), EncryptOpError> {
        self.inner.tdx_finalize_vm()
    }
}

fn tdx_run(f: Faults) -> (Result<(), LaunchError>, Option<(u32, u32)>) {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::tdx(&fw).unwrap();
    let off = offline(&plan);
    let mut launch = match Launch::new(
        Flaky::new(SimBackend::tdx(), f),
        InitParams::Tdx(TdxInit::default()),
    ) {
        Ok(l) => l,
        Err(e) => return (Err(e), None),
    };
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut started = launch.start().unwrap();
    if let Err(e) = started.add_plan(&plan) {
        return (Err(e), None);
    }
    let done = started.measure().unwrap().finish().unwrap();
    assert_eq!(done.log().diff(off.log.as_ref().unwrap()), None);
    let mrtd = done.backend().inner.tdx_mrtd().unwrap();
    assert_eq!(&mrtd[..], off.digest.as_bytes());
    assert_eq!(hex::encode(mrtd), SYN64K_MRTD, "MRTD vs mrtd_ref.py");
    let b = done.backend();
    (Ok(()), Some((b.calls.get(), b.caps_calls.get())))
}

#[test]
fn tdx_populate_survives_eagain_eintr_and_partial_progress() {
    let pages: u32 = {
        let img = measure_common::syn64k();
        let fw = FirmwareImage::parse(&img).unwrap();
        let plan = LaunchPlan::tdx(&fw).unwrap();
        (plan.total_len() / 4096) as u32
    };
    let (r, counts) = tdx_run(Faults {
        one_page_at_a_time: true,
        ..Faults::default()
    });
    r.unwrap();
    assert_eq!(counts.unwrap().0, pages, "one call per page");
    let (r, counts) = tdx_run(Faults {
        eintr_after_one: true,
        eagain_first: true,
        ..Faults::default()
    });
    r.unwrap();
    assert!(counts.unwrap().0 > pages, "EAGAIN calls come on top");
}

#[test]
fn tdx_init_vm_eagain_is_retried_and_capabilities_grow() {
    let (r, counts) = tdx_run(Faults {
        init_vm_eagain: 3,
        caps_min: 64,
        ..Faults::default()
    });
    r.unwrap();
    // 8 → 16 → 32 → 64 entries: four calls.
    assert_eq!(counts.unwrap().1, 4);
    // A module that needs more than 256 entries: E2BIG surfaces after the last size.
    let (r, _) = tdx_run(Faults {
        caps_min: 512,
        ..Faults::default()
    });
    assert_eq!(r.unwrap_err().errno().map(|e| e.raw()), Some(libc::E2BIG));
    // INIT_VM that stays busy gives up after MAX_RETRIES with the last answer.
    let (r, _) = tdx_run(Faults {
        init_vm_eagain: 1000,
        ..Faults::default()
    });
    match r.unwrap_err() {
        LaunchError::Busy {
            command,
            tries,
            source,
        } => {
            assert_eq!((command, tries), ("KVM_TDX_INIT_VM", MAX_RETRIES));
            assert_eq!(source.errno.raw(), libc::EAGAIN);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_kernel_that_stops_early_is_reported() {
    let (r, _) = tdx_run(Faults {
        stuck: true,
        ..Faults::default()
    });
    assert!(matches!(
        r,
        Err(LaunchError::IncompleteRange {
            command: "KVM_TDX_INIT_MEM_REGION",
            ..
        })
    ));
    let (r, _) = tdx_run(Faults {
        always_eagain: true,
        ..Faults::default()
    });
    assert!(matches!(r, Err(LaunchError::Busy { .. })));
}

#[test]
fn snp_populate_survives_eagain_and_partial_progress() {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 1, "EPYC-v4");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let off = offline(&plan);
    // facts §8.2, row 1.
    assert_eq!(
        off.digest.to_string(),
        ssm_output(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            "syn64k.fd"
        ])
    );
    for f in [
        Faults {
            eagain_first: true,
            one_page_at_a_time: true,
            ..Faults::default()
        },
        Faults {
            stuck: true,
            ..Faults::default()
        },
    ] {
        let stuck = f.stuck;
        let mut launch = Launch::new(
            Flaky::new(SimBackend::snp().unwrap(), f),
            InitParams::Snp(SnpInit::default()),
        )
        .unwrap();
        launch.add_plan_memory(&plan).unwrap();
        launch.create_vcpu(0).unwrap();
        let mut started = launch.start().unwrap();
        let r = started.add_plan(&plan);
        if stuck {
            assert!(matches!(
                r,
                Err(LaunchError::IncompleteRange {
                    command: "KVM_SEV_SNP_LAUNCH_UPDATE",
                    ..
                })
            ));
            continue;
        }
        r.unwrap();
        let done = started.measure().unwrap().finish().unwrap();
        assert_eq!(done.log().diff(off.log.as_ref().unwrap()), None);
        assert_eq!(
            &done.backend().inner.snp_launch_digest().unwrap()[..],
            off.digest.as_bytes()
        );
    }
}
