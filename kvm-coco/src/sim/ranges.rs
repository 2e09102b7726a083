//! Sets of guest-physical ranges as the models keep them (memory attributes, guest_memfd
//! bindings): a map from each range's start to its end, ranges disjoint and half-open.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

/// Marks `[start, end)` as in the set (`on`) or out of it, splitting the ranges it
/// overlaps, as `kvm_vm_set_mem_attributes` updates the attribute array.
pub(crate) fn set(map: &mut BTreeMap<u64, u64>, start: u64, end: u64, on: bool) {
    let overlapping: Vec<(u64, u64)> = map
        .range(..end)
        .filter(|(_, e)| **e > start)
        .map(|(s, e)| (*s, *e))
        .collect();
    for (s, e) in overlapping {
        map.remove(&s);
        if s < start {
            map.insert(s, start);
        }
        if e > end {
            map.insert(end, e);
        }
    }
    if on {
        map.insert(start, end);
    }
}

/// Whether `addr` lies in one of the ranges.
pub(crate) fn contains(map: &BTreeMap<u64, u64>, addr: u64) -> bool {
    map.range(..=addr)
        .next_back()
        .is_some_and(|(_, e)| addr < *e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_and_clearing_splits_overlapping_ranges() {
        let mut m = BTreeMap::new();
        set(&mut m, 0x1000, 0x5000, true);
        set(&mut m, 0x2000, 0x3000, false);
        assert_eq!(
            m.iter().map(|(s, e)| (*s, *e)).collect::<Vec<_>>(),
            [(0x1000, 0x2000), (0x3000, 0x5000)]
        );
        assert!(contains(&m, 0x1000) && contains(&m, 0x1fff) && contains(&m, 0x4fff));
        assert!(!contains(&m, 0x2000) && !contains(&m, 0x2fff) && !contains(&m, 0x5000));
        assert!(!contains(&m, 0xfff));
        set(&mut m, 0x1800, 0x3800, true);
        assert!((0x1000..0x5000).step_by(0x100).all(|a| contains(&m, a)));
    }
}
