//! QEMU's kernel / initrd / command-line hash table read back
//! (`SevHashes::parse_table`): a value or a typed error; a table that parses re-encodes to
//! a table that parses to the same digests.
#![no_main]

use kvm_coco::measure::hashes::SevHashes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = SevHashes::parse_table(data) {
        assert_eq!(SevHashes::parse_table(&h.table()), Ok(h));
    }
});
