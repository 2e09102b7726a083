//! Launch-log JSON: parsed, replayed, diffed with itself and round-tripped. Never a panic.
#![no_main]

use kvm_coco::measure::log::LaunchLog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(log) = LaunchLog::from_json(s) else {
        return;
    };
    let _ = log.replay();
    assert_eq!(log.diff(&log), None);
    let again = LaunchLog::from_json(&log.to_json()).expect("a written log parses");
    assert_eq!(again, log);
});
