//! Internal consistency of the public manifest (the header comparison itself is
//! `cargo xtask uapi-check`).

use kvm_coco_uapi::manifest::{self, CType, FieldKind};
use std::collections::HashSet;

#[test]
fn names_are_unique() {
    let mut seen = HashSet::new();
    for s in manifest::structs() {
        assert!(
            seen.insert(format!("{:?}", s.c_type)),
            "duplicate {:?}",
            s.c_type
        );
        let mut fields = HashSet::new();
        for f in s.fields {
            assert!(
                fields.insert(f.name),
                "duplicate field {}.{}",
                s.rust_name,
                f.name
            );
        }
    }
    let mut consts = HashSet::new();
    for c in manifest::constants() {
        assert!(consts.insert(c.name), "duplicate constant {}", c.name);
    }
}

#[test]
fn fields_tile_each_struct_without_overlap() {
    for s in manifest::structs() {
        let mut end = 0;
        for f in s.fields {
            assert!(
                f.offset >= end,
                "{}.{} overlaps the previous field",
                s.rust_name,
                f.name
            );
            end = f.offset + f.size;
        }
        assert!(end <= s.size, "{} fields exceed its size", s.rust_name);
        // No implicit padding: zerocopy's IntoBytes derive already guarantees it; the
        // manifest must agree (sum of field sizes = size).
        let sum: usize = s.fields.iter().map(|f| f.size).sum();
        assert_eq!(sum, s.size, "{} has unlisted bytes", s.rust_name);
    }
}

#[test]
fn every_bitfield_lies_in_a_recorded_storage_unit() {
    for b in manifest::bitfields() {
        let s = manifest::structs()
            .find(|s| s.c_type == CType::Struct(b.c_struct))
            .unwrap_or_else(|| panic!("{} not in the manifest", b.c_struct));
        let unit = s
            .fields
            .iter()
            .find(|f| f.kind == FieldKind::Bitfield && f.offset == b.storage_offset)
            .unwrap_or_else(|| {
                panic!("no storage field at {} in {}", b.storage_offset, b.c_struct)
            });
        assert_eq!(unit.size, b.storage_size);
        assert!(b.bit + b.width <= (b.storage_size * 8) as u32);
    }
    // Each storage unit is fully described by its bitfields (no unaccounted bits).
    for s in manifest::structs() {
        for f in s.fields.iter().filter(|f| f.kind == FieldKind::Bitfield) {
            let CType::Struct(name) = s.c_type else {
                panic!("bitfield outside a named struct")
            };
            let bits: u32 = manifest::bitfields()
                .filter(|b| b.c_struct == name && b.storage_offset == f.offset)
                .map(|b| b.width)
                .sum();
            assert_eq!(bits as usize, f.size * 8, "{}.{}", s.rust_name, f.name);
        }
    }
}

#[test]
fn counts() {
    assert!(manifest::structs().count() >= 50);
    assert!(manifest::constants().count() >= 200);
    assert!(manifest::exprs().count() >= 10);
}
