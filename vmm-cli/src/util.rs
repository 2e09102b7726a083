//! Small parsers and output helpers shared by the subcommands.

use std::path::Path;

use crate::{CliError, cli_err};

/// Parses a decimal or `0x` hexadecimal integer (clap value parser).
pub(crate) fn int<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let s = s.trim();
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("'{s}' is not an integer: {e}"))?;
    T::try_from(v).map_err(|_| format!("'{s}' is out of range"))
}

/// Parses a size: a number with an optional `K`, `M`, `G` or `T` suffix (binary units,
/// an optional trailing `B` or `iB`), e.g. `512M`, `2G`, `0x100000`.
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (num, shift) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 10),
        Some('M') => (&body[..body.len() - 1], 20),
        Some('G') => (&body[..body.len() - 1], 30),
        Some('T') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let n: u64 = if num.starts_with("0X") {
        int(&num.to_ascii_lowercase())?
    } else {
        int(num).map_err(|_| format!("'{s}' is not a size (e.g. 512M, 2G)"))?
    };
    n.checked_mul(1u64 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("'{s}' is not a usable size"))
}

/// Reads a whole file, mapping errors to a one-line input error.
pub(crate) fn read(what: &str, p: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(p).map_err(|e| cli_err!("cannot read {what} '{}': {e}", p.display()))
}

/// Checks, before any work is done, that `p` can be created or replaced as a file: its
/// directory exists and it is not itself a directory. Whatever else can still go wrong
/// (permissions, a full disk) is reported when the file is written.
pub(crate) fn check_output(option: &str, p: &Path) -> Result<(), CliError> {
    if p.is_dir() {
        return Err(cli_err!("{option} '{}': is a directory", p.display()));
    }
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => Err(cli_err!(
            "{option} '{}': the directory '{}' does not exist",
            p.display(),
            d.display()
        )),
        _ => Ok(()),
    }
}

/// Writes a whole file, mapping errors to a one-line error.
pub(crate) fn write(what: &str, p: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(p, bytes).map_err(|e| cli_err!("cannot write {what} '{}': {e}", p.display()))
}

/// Decodes up to `N` bytes of hex, zero-padded on the right.
pub(crate) fn hex_padded<const N: usize>(what: &str, s: &str) -> Result<[u8; N], CliError> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let v = hex::decode(t).map_err(|e| cli_err!("{what}: not hex: {e}"))?;
    if v.len() > N {
        return Err(cli_err!("{what}: {} bytes given, at most {N}", v.len()));
    }
    let mut out = [0u8; N];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}

/// Prints `v` as pretty JSON on stdout.
pub(crate) fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// An error with its `source()` chain on one line (`outer: cause: cause`), each cause
/// skipped when the text before already contains it.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("1k"), Ok(1024));
        assert_eq!(size("0x1000"), Ok(0x1000));
        assert!(size("lots").is_err());
        assert!(size("0").is_err());
        assert!(size("99999999999T").is_err());
    }

    #[test]
    fn hex_is_padded_and_bounded() {
        assert_eq!(hex_padded::<4>("x", "0102").unwrap(), [1, 2, 0, 0]);
        assert!(hex_padded::<1>("x", "0102").is_err());
        assert!(hex_padded::<4>("x", "zz").is_err());
    }
}
