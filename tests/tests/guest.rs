//! A tiny real-mode guest run through the kvm-coco API on the host's /dev/kvm.

use std::time::Duration;

use kvm_coco::{Exit, VmType};
use kvm_coco_tests::{OUT_HLT, Watchdog, kvm_or_skip, real_mode_guest, real_mode_vcpu};

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn real_mode_guest_reaches_io_out_then_hlt() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, mut vcpu, _mem) = real_mode_guest(&kvm, &OUT_HLT).unwrap();
    let dog = Watchdog::arm(TIMEOUT);
    let mut seen = Vec::new();
    loop {
        match vcpu.run().unwrap() {
            Exit::IoOut { port, data } => seen.push(format!("out {port:#x} {data:?}")),
            Exit::Hlt => {
                seen.push("hlt".into());
                break;
            }
            Exit::Interrupted => panic!("watchdog fired after {TIMEOUT:?}: {seen:?}"),
            other => panic!("unexpected exit {other:?} after {seen:?}"),
        }
    }
    assert!(!dog.fired());
    assert_eq!(seen, ["out 0x3f8 [65]", "hlt"]);
    // Facts kvm-on-this-machine-kind §2(a): rip ends after the 7-byte program.
    assert_eq!(vcpu.regs().unwrap().rip, 0x1007);
}

#[test]
fn io_in_value_reaches_the_guest() {
    let Some(kvm) = kvm_or_skip() else { return };
    // in al, 0x60 ; out 0x61, al ; hlt
    let code = [0xe4, 0x60, 0xe6, 0x61, 0xf4];
    let (_vm, mut vcpu, _mem) = real_mode_guest(&kvm, &code).unwrap();
    let _dog = Watchdog::arm(TIMEOUT);
    match vcpu.run().unwrap() {
        Exit::IoIn { port: 0x60, data } => data.copy_from_slice(&[0x5a]),
        other => panic!("{other:?}"),
    }
    match vcpu.run().unwrap() {
        Exit::IoOut { port: 0x61, data } => assert_eq!(data, [0x5a]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(vcpu.run().unwrap(), Exit::Hlt));
}

#[test]
fn mmio_write_outside_memory_exits() {
    let Some(kvm) = kvm_or_skip() else { return };
    // mov ax, 0xffff ; mov ds, ax ; mov byte [0x10], 0x77 ; hlt
    // ds:0x10 = 0xffff0 + 0x10 = GPA 0x100000, just past the 1 MiB slot.
    let code = [
        0xb8, 0xff, 0xff, 0x8e, 0xd8, 0xc6, 0x06, 0x10, 0x00, 0x77, 0xf4,
    ];
    let (_vm, mut vcpu, _mem) = real_mode_guest(&kvm, &code).unwrap();
    let _dog = Watchdog::arm(TIMEOUT);
    match vcpu.run().unwrap() {
        Exit::MmioWrite { gpa, data } => {
            assert_eq!(gpa, 0x10_0000);
            assert_eq!(data, [0x77]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn immediate_exit_returns_interrupted_without_entering() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, mut vcpu, _mem) = real_mode_guest(&kvm, &OUT_HLT).unwrap();
    let _dog = Watchdog::arm(TIMEOUT);
    vcpu.set_immediate_exit(true);
    assert!(matches!(vcpu.run().unwrap(), Exit::Interrupted));
    assert_eq!(vcpu.regs().unwrap().rip, 0x1000, "the guest did not run");
    vcpu.set_immediate_exit(false);
    assert!(matches!(
        vcpu.run().unwrap(),
        Exit::IoOut { port: 0x3f8, .. }
    ));
}

#[test]
fn watchdog_kicks_a_blocked_vcpu() {
    let Some(kvm) = kvm_or_skip() else { return };
    // With an in-kernel irqchip HLT does not exit: KVM_RUN blocks until a signal. The
    // irqchip comes before the first vCPU (KVM_CREATE_IRQCHIP is EINVAL afterwards).
    let vm = kvm.create_vm(VmType::Default).unwrap();
    vm.kvm_ioctls().create_irq_chip().unwrap();
    let (mut vcpu, _mem) = real_mode_vcpu(&vm, &[0xf4]).unwrap();
    let dog = Watchdog::arm(Duration::from_millis(100));
    let exit = vcpu.run().unwrap();
    assert!(matches!(exit, Exit::Interrupted), "{exit:?}");
    assert!(dog.fired());
}
