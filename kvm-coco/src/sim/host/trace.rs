//! The trace: one JSON object per line for every call the software host served or passed on,
//! which is what a VMM author reads when a launch fails.
//!
//! Fields: `pid` (thread id of the caller), `fd` and `fd_kind` (`kvm`, `vm`, `vcpu`,
//! `guest_memfd`, `sev`, `path`), `call` (`ioctl`, `openat`, …), `ioctl` (its name),
//! `subcommand` (the `KVM_MEMORY_ENCRYPT_OP` / `SEV_ISSUE_CMD` command), `arg_before` /
//! `arg_after` (the argument struct or sub-command payload, hex, as read from and written back
//! to the caller), `result` (return value), `errno`, `fw_error` (SEV status) or `hw_error`
//! (TDX), `fault` (an injected fault), `note`, `us` (microseconds spent serving).

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// One trace line.
#[derive(Debug, Default, Serialize)]
pub(crate) struct TraceLine {
    pub pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
    pub fd_kind: &'static str,
    pub call: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ioctl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fw_error: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub us: u64,
}

/// Where trace lines go.
#[derive(Debug)]
pub(crate) struct Trace {
    out: Mutex<BufWriter<File>>,
}

impl Trace {
    /// Creates (truncates) `path`.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    /// Appends one line (and flushes, so a trace survives a crash of the host's user).
    pub(crate) fn write(&self, line: &TraceLine) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if serde_json::to_writer(&mut *out, line).is_ok() {
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    }
}
