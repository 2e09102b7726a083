//! `cargo xtask uapi-check`: compares `kvm-coco-uapi` with the real Linux 7.3.4 uAPI headers.
//!
//! 1. Fetches Debian's `linux-libc-dev` 7.3.4-1~bpo13+1 (trixie-backports) into the
//!    workspace target directory (`<target>/uapi-check/`), never installing it, with
//!    `apt-get download` from the Debian archive the system's apt sources already name
//!    (`DEBIAN_ARCHIVE_URI` names another): a private sources list for trixie-backports, its
//!    own package lists and cache under the target directory, the system's apt configuration
//!    and keys otherwise, as `kvm-coco/tests/vectors/fetch_debian_firmware.sh` does. The
//!    `.deb` is pinned by SHA-256 (the value in the signed trixie-backports `Packages`
//!    index); a mismatch is an error.
//! 2. Unpacks it with `dpkg -x` next to the cache.
//! 3. Generates one `_Static_assert` per size, alignment, field offset, field size,
//!    constant and `kvm_run` offset recorded in `kvm_coco_uapi::manifest`, and compiles the
//!    file with gcc (`-I<h>/usr/lib/linux/uapi/x86 -I<h>/usr/include`: the package's
//!    `asm` symlinks are absolute and dangle once unpacked elsewhere).
//! 4. Runs a self-test: corrupts one field offset and one constant of an in-memory copy
//!    of the manifest and requires gcc to fail on exactly those two items.
//!
//! Options: `--self-test` (only the self-test), `--deb <path>` (use a local copy of the
//! package; its hash is still checked), `--keep` (print the path of the generated C file).

mod cgen;

use cgen::{
    Manifest, failed_bitfields, failed_keys, generate, generate_bitfield_program, struct_key,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEB_NAME: &str = "linux-libc-dev_7.3.4-1~bpo13+1_all.deb";
const DEB_VERSION: &str = "7.3.4-1~bpo13+1";
const DEB_SHA256: &str = "b3a4538fca67081c8606a93f37521d0eb74ac75996a02f3321a6b27f978e10a8";
/// The suite that has the package.
const SUITE: &str = "trixie-backports";

/// Runs the check (see the module documentation).
pub fn run(args: &[String]) -> Result<(), String> {
    let mut self_test_only = false;
    let mut keep = false;
    let mut local_deb = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--self-test" => self_test_only = true,
            "--keep" => keep = true,
            "--deb" => {
                local_deb = Some(PathBuf::from(it.next().ok_or("--deb needs a path")?));
            }
            other => return Err(format!("uapi-check: unknown option {other}")),
        }
    }

    let cache = target_dir().join("uapi-check");
    std::fs::create_dir_all(&cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let deb = obtain_deb(&cache, local_deb.as_deref())?;
    let headers = unpack(&cache, &deb)?;
    let manifest = Manifest::from_crate();

    if !self_test_only {
        let (c, counts) = generate(&manifest)?;
        let file = cache.join("uapi_check.c");
        let failed = compile(&headers, &file, &c)?;
        if keep {
            eprintln!("uapi-check: generated {}", file.display());
        }
        if let Some((keys, diag)) = failed {
            eprintln!("{diag}");
            let mut msg = format!("{} item(s) differ from Linux {DEB_VERSION}:", keys.len());
            for k in &keys {
                msg.push_str("\n  - ");
                msg.push_str(k);
            }
            if keys.is_empty() {
                msg.push_str(
                    "\n  gcc failed without a uapi-check assertion (see diagnostics above)",
                );
            }
            return Err(msg);
        }
        let bad_bits = run_bitfields(&headers, &cache, &manifest, "bitfields")?;
        if !bad_bits.is_empty() {
            return Err(format!(
                "{} bitfield(s) differ from Linux {DEB_VERSION}:\n  - {}",
                bad_bits.len(),
                bad_bits.join("\n  - ")
            ));
        }
        println!(
            "uapi-check: OK against linux-libc-dev {DEB_VERSION}: {} structs, {} fields, \
             {} constants, {} kvm_run offsets ({} static assertions), {} bitfield members \
             (compiled and run); {} storage/padding/union fields are covered by the struct sizes",
            counts.structs,
            counts.fields,
            counts.constants,
            counts.exprs,
            counts.asserts,
            manifest.bitfields.len(),
            counts.unnamed_fields,
        );
    }
    self_test(&headers, &cache, &manifest)?;
    println!(
        "uapi-check: self-test OK (a wrong field offset, a wrong constant and a wrong bitfield \
         position are each caught by name)"
    );
    Ok(())
}

/// The target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_hash(path: &Path) -> Result<bool, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(sha256_hex(&bytes) == DEB_SHA256)
}

/// Returns a verified copy of the package inside the cache.
fn obtain_deb(cache: &Path, local: Option<&Path>) -> Result<PathBuf, String> {
    let dest = cache.join(DEB_NAME);
    if let Some(src) = local {
        std::fs::copy(src, &dest).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
        return verify(&dest);
    }
    if dest.exists() && check_hash(&dest)? {
        return Ok(dest);
    }
    apt_download(cache, &dest)?;
    verify(&dest)
}

/// The Debian archive to fetch from: `DEBIAN_ARCHIVE_URI`, else the first archive labelled
/// `Debian` among the package indexes of the system's apt sources.
fn archive_uri() -> Result<String, String> {
    if let Some(uri) = std::env::var("DEBIAN_ARCHIVE_URI")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return Ok(uri);
    }
    let out = Command::new("apt-get")
        .args([
            "indextargets",
            "--format",
            "$(LABEL)|$(REPO_URI)",
            "Identifier: Packages",
        ])
        .output()
        .map_err(|e| format!("cannot run apt-get indextargets: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Debian|").map(str::to_owned))
        .ok_or_else(|| {
            "no Debian archive in the system's apt sources; set DEBIAN_ARCHIVE_URI".to_owned()
        })
}

fn verify(path: &Path) -> Result<PathBuf, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let got = sha256_hex(&bytes);
    if got != DEB_SHA256 {
        return Err(format!(
            "{} has SHA-256 {got}, expected {DEB_SHA256}: refusing to use it",
            path.display()
        ));
    }
    Ok(path.to_path_buf())
}

/// `apt-get download` into a scratch directory of the cache, with a private sources list
/// for [`SUITE`] of [`archive_uri`], private package lists, cache and (empty) dpkg status,
/// and the system's apt configuration and archive keys otherwise; the package is then moved
/// to `dest`. Nothing is installed and the system's apt state is not touched.
fn apt_download(cache: &Path, dest: &Path) -> Result<(), String> {
    let uri = archive_uri()?;
    let apt = cache.join("apt");
    let download = cache.join("download");
    let _ = std::fs::remove_dir_all(&download);
    for d in [
        apt.join("lists/partial"),
        apt.join("cache/archives/partial"),
        apt.join("empty"),
        download.clone(),
    ] {
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let sources = apt.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb [target=Packages] {uri} {SUITE} main\n"),
    )
    .map_err(|e| format!("cannot write sources.list: {e}"))?;
    let status = apt.join("status");
    std::fs::write(&status, "").map_err(|e| format!("cannot write {}: {e}", status.display()))?;
    let opts = [
        format!("-oDir::Etc::sourcelist={}", sources.display()),
        format!("-oDir::Etc::sourceparts={}", apt.join("empty").display()),
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::State::status={}", status.display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        "-oAPT::Get::List-Cleanup=0".to_string(),
        // The download goes to a directory the unprivileged `_apt` user may not write.
        "-oAPT::Sandbox::User=root".to_string(),
    ];
    eprintln!("uapi-check: apt-get download linux-libc-dev={DEB_VERSION} ({SUITE} of {uri})");
    let run = |extra: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(&opts)
            .args(extra)
            .current_dir(&download)
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {} failed: {}",
                extra.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(&["update"])?;
    run(&["download", &format!("linux-libc-dev={DEB_VERSION}")])?;
    let deb = std::fs::read_dir(&download)
        .map_err(|e| format!("cannot list {}: {e}", download.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download left no .deb in {}", download.display()))?;
    std::fs::rename(&deb, dest).map_err(|e| format!("cannot move {}: {e}", deb.display()))
}

/// Unpacks the package (once) and returns the root of the extracted tree.
fn unpack(cache: &Path, deb: &Path) -> Result<PathBuf, String> {
    let root = cache.join(format!("linux-libc-dev-{DEB_VERSION}"));
    let marker = root.join(".complete");
    if marker.exists() {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .map_err(|e| format!("cannot run dpkg -x: {e}"))?;
    if !status.success() {
        return Err(format!("dpkg -x {} failed ({status})", deb.display()));
    }
    for needed in [
        "usr/include/linux/kvm.h",
        "usr/include/linux/psp-sev.h",
        "usr/lib/linux/uapi/x86/asm/kvm.h",
    ] {
        if !root.join(needed).exists() {
            return Err(format!("{needed} missing from {}", deb.display()));
        }
    }
    std::fs::write(&marker, DEB_SHA256).map_err(|e| format!("cannot write marker: {e}"))?;
    Ok(root)
}

/// Compiles `source`; `Ok(None)` on success, `Ok(Some((failed keys, diagnostics)))` on failure.
fn compile(
    headers: &Path,
    file: &Path,
    source: &str,
) -> Result<Option<(Vec<String>, String)>, String> {
    std::fs::write(file, source).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let out = Command::new("gcc")
        .args([
            "-std=gnu11",
            "-fsyntax-only",
            "-Werror=implicit-function-declaration",
        ])
        .arg(format!(
            "-I{}",
            headers.join("usr/lib/linux/uapi/x86").display()
        ))
        .arg(format!("-I{}", headers.join("usr/include").display()))
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if out.status.success() {
        return Ok(None);
    }
    let diag = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok(Some((failed_keys(&diag), diag)))
}

/// Builds and runs the bitfield program; returns the keys of mismatching members.
fn run_bitfields(
    headers: &Path,
    cache: &Path,
    m: &Manifest,
    stem: &str,
) -> Result<Vec<String>, String> {
    let src = cache.join(format!("uapi_check_{stem}.c"));
    let exe = cache.join(format!("uapi_check_{stem}"));
    std::fs::write(&src, generate_bitfield_program(m))
        .map_err(|e| format!("cannot write {}: {e}", src.display()))?;
    let out = Command::new("gcc")
        .args(["-std=gnu11", "-w"])
        .arg(format!(
            "-I{}",
            headers.join("usr/lib/linux/uapi/x86").display()
        ))
        .arg(format!("-I{}", headers.join("usr/include").display()))
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bitfield program does not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let run = Command::new(&exe)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let keys = failed_bitfields(&stdout);
    if run.status.success() != keys.is_empty() {
        return Err(format!(
            "bitfield program: inconsistent result ({}):\n{stdout}",
            run.status
        ));
    }
    Ok(keys)
}

/// Corrupts one field offset and one constant and requires gcc to name exactly those.
fn self_test(headers: &Path, cache: &Path, base: &Manifest) -> Result<(), String> {
    let mut m = base.clone();
    let s = m
        .structs
        .iter_mut()
        .find(|s| struct_key(&s.c_type) == "kvm_sev_snp_launch_finish")
        .ok_or("self-test: kvm_sev_snp_launch_finish missing from the manifest")?;
    let f = s
        .fields
        .iter_mut()
        .find(|f| f.name == "host_data")
        .ok_or("self-test: host_data missing")?;
    f.offset += 1; // 19 -> 20: the natural-alignment mistake
    let c = m
        .constants
        .iter_mut()
        .find(|c| c.name == "KVM_EXIT_SNP_REQ_CERTS")
        .ok_or("self-test: KVM_EXIT_SNP_REQ_CERTS missing")?;
    c.value = 42; // the patch-era number
    let (src, _) = generate(&m)?;
    let file = cache.join("uapi_check_selftest.c");
    let expected = [
        "field-offset kvm_sev_snp_launch_finish.host_data".to_string(),
        "constant KVM_EXIT_SNP_REQ_CERTS".to_string(),
    ];
    match compile(headers, &file, &src)? {
        None => return Err("self-test: gcc accepted a corrupted manifest".into()),
        Some((mut keys, diag)) => {
            keys.sort();
            let mut want = expected.to_vec();
            want.sort();
            if keys != want {
                return Err(format!(
                    "self-test: expected failures {want:?}, gcc reported {keys:?}\n{diag}"
                ));
            }
        }
    }
    // A bitfield placed one bit too high must be reported, and only that one.
    let b = m
        .bitfields
        .iter_mut()
        .find(|b| b.c_struct == "sev_user_data_snp_status" && b.member == "vlek_en")
        .ok_or("self-test: sev_user_data_snp_status.vlek_en missing")?;
    b.bit += 1;
    let keys = run_bitfields(headers, cache, &m, "bitfields_selftest")?;
    let want = vec!["bitfield sev_user_data_snp_status.vlek_en".to_string()];
    if keys != want {
        return Err(format!(
            "self-test: expected bitfield failures {want:?}, got {keys:?}"
        ));
    }
    Ok(())
}
