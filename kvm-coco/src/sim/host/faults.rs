//! Fault plans: errors the software host injects into chosen calls ([`FaultPlan`]).

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a rule does to a matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// `EAGAIN` before any progress.
    Again,
    /// At most this many pages are done, then `EAGAIN` with the progress written back.
    Partial(u64),
    /// `EBUSY`.
    Busy,
    /// `EINTR` before any progress.
    Interrupted,
    /// Success with no progress (the struct is written back unchanged).
    Stall,
    /// `E2BIG`.
    TooBig,
    /// `EIO` with this firmware status in `kvm_sev_cmd.error`.
    FirmwareStatus(u32),
}

/// When a rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultWhen {
    /// Every matching call.
    Always,
    /// Only the `N`th matching call (1-based).
    Nth(u64),
    /// Each matching call with this probability in percent (0–100), from the seed.
    Percent(u8),
}

/// One rule of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultRule {
    /// The sub-command's name, normalized (upper case, without `KVM_SEV_` / `KVM_TDX_`), or
    /// `*`.
    pub command: String,
    /// What happens.
    pub action: FaultAction,
    /// When.
    pub when: FaultWhen,
    seen: AtomicU64,
}

impl FaultRule {
    /// A rule; `command` as in the spec.
    pub fn new(command: &str, action: FaultAction, when: FaultWhen) -> Self {
        Self {
            command: normalize(command),
            action,
            when,
            seen: AtomicU64::new(0),
        }
    }
}

/// Fault plans: errors the software host injects into chosen calls, to test a VMM's retry
/// loops and error paths.
///
/// A plan is a list of rules, written as a spec string (`vmm-cli sim-host --faults`):
///
/// ```text
/// RULE[,RULE...]     RULE = COMMAND:ACTION[@N | %P]
/// ```
///
/// - `COMMAND` names a sub-command as the kernel spells it, case-insensitive, with or without
///   the `KVM_SEV_` / `KVM_TDX_` prefix: `snp_launch_update`, `init_vm`, `init_mem_region`,
///   `launch_update_data`, … or `*` for every served `KVM_MEMORY_ENCRYPT_OP`.
/// - `ACTION` is `eagain` (fail with `EAGAIN` before any progress), `partial=K` (do at most
///   `K` pages, then fail with `EAGAIN` with the progress written back, as the kernel does
///   when it is interrupted), `eintr` (fail with `EINTR`: a signal arrived), `stall` (return
///   success without any progress), `e2big` (fail with `E2BIG`: the buffer is too small),
///   `busy` (`EBUSY`: the PSP is busy with another command) or `fw=S` (fail with `EIO` and
///   firmware status `S` — SEV `error` or TDX `hw_error` — decimal or `0x` hex).
/// - `@N` applies the rule to the `N`th matching call only (1-based); `%P` to each matching
///   call with probability `P` percent, drawn from the host's seed; neither: every call.
///
/// ```
/// use kvm_coco::sim::host::FaultPlan;
/// let plan: FaultPlan = "snp_launch_update:partial=1,init_vm:eagain@1".parse()?;
/// assert_eq!(plan.rules().len(), 2);
/// assert!("snp_launch_update:explode".parse::<FaultPlan>().is_err());
/// # Ok::<(), kvm_coco::sim::host::FaultSpecError>(())
/// ```
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
    rng: Mutex<u64>,
}

/// A fault spec that cannot be parsed: the rule and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad fault rule `{rule}`: {reason} (expected COMMAND:ACTION[@N|%P], ACTION one of eagain, partial=K, busy, fw=STATUS)"
)]
pub struct FaultSpecError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn normalize(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    up.strip_prefix("KVM_SEV_")
        .or_else(|| up.strip_prefix("KVM_TDX_"))
        .unwrap_or(&up)
        .to_string()
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl FromStr for FaultPlan {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut rules = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let err = |reason| FaultSpecError {
                rule: raw.to_string(),
                reason,
            };
            let (command, rest) = raw.split_once(':').ok_or(err("no `:` after the command"))?;
            if command.trim().is_empty() {
                return Err(err("empty command"));
            }
            let (action, when) = if let Some((a, n)) = rest.split_once('@') {
                let n = parse_u64(n)
                    .filter(|&n| n > 0)
                    .ok_or(err("`@N` needs N >= 1"))?;
                (a, FaultWhen::Nth(n))
            } else if let Some((a, p)) = rest.split_once('%') {
                let p = parse_u64(p)
                    .filter(|&p| p <= 100)
                    .ok_or(err("`%P` needs 0 <= P <= 100"))?;
                (a, FaultWhen::Percent(p as u8))
            } else {
                (rest, FaultWhen::Always)
            };
            let action = match action.trim().to_ascii_lowercase().as_str() {
                "eagain" => FaultAction::Again,
                "busy" => FaultAction::Busy,
                "eintr" => FaultAction::Interrupted,
                "stall" => FaultAction::Stall,
                "e2big" => FaultAction::TooBig,
                a => {
                    if let Some(k) = a.strip_prefix("partial=") {
                        FaultAction::Partial(
                            parse_u64(k).ok_or(err("`partial=K` needs a page count"))?,
                        )
                    } else if let Some(s) = a.strip_prefix("fw=") {
                        let s = parse_u64(s)
                            .and_then(|s| u32::try_from(s).ok())
                            .filter(|&s| s != 0)
                            .ok_or(err("`fw=S` needs a non-zero 32-bit status"))?;
                        FaultAction::FirmwareStatus(s)
                    } else {
                        return Err(err("unknown action"));
                    }
                }
            };
            rules.push(FaultRule::new(command, action, when));
        }
        Ok(Self {
            rules,
            rng: Mutex::new(0),
        })
    }
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// The rules.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Seeds the `%P` draws.
    pub(crate) fn seed(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = seed ^ 0x9E37_79B9_7F4A_7C15;
    }

    fn draw(&self) -> u64 {
        // splitmix64: deterministic for a seed, independent of the model's crypto RNG.
        let mut g = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *g;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The fault to inject into this call of `command` (its kernel name), if any: the
    /// first rule that applies. Every matching rule counts the call, whether or not an
    /// earlier rule applied, so `@N` always means the `N`th call of the command.
    pub(crate) fn check(&self, command: &str) -> Option<FaultAction> {
        let name = normalize(command);
        let mut hit = None;
        for r in &self.rules {
            if r.command != "*" && r.command != name {
                continue;
            }
            let n = r.seen.fetch_add(1, Ordering::Relaxed) + 1;
            let applies = match r.when {
                FaultWhen::Always => true,
                FaultWhen::Nth(k) => n == k,
                FaultWhen::Percent(p) => self.draw() % 100 < u64::from(p),
            };
            if applies && hit.is_none() {
                hit = Some(r.action);
            }
        }
        hit
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Again => f.write_str("eagain"),
            Self::Partial(k) => write!(f, "partial={k}"),
            Self::Busy => f.write_str("busy"),
            Self::Interrupted => f.write_str("eintr"),
            Self::Stall => f.write_str("stall"),
            Self::TooBig => f.write_str("e2big"),
            Self::FirmwareStatus(s) => write!(f, "fw={s:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let p: FaultPlan = "KVM_SEV_SNP_LAUNCH_UPDATE:partial=2, init_vm:eagain@3, *:fw=0x10%50, launch_finish:busy"
            .parse()
            .unwrap();
        let r = p.rules();
        assert_eq!(r[0].command, "SNP_LAUNCH_UPDATE");
        assert_eq!(r[0].action, FaultAction::Partial(2));
        assert_eq!(
            (r[1].action, r[1].when),
            (FaultAction::Again, FaultWhen::Nth(3))
        );
        assert_eq!(
            (r[2].action, r[2].when),
            (FaultAction::FirmwareStatus(0x10), FaultWhen::Percent(50))
        );
        assert_eq!(r[3].action, FaultAction::Busy);
    }

    #[test]
    fn nth_counts_every_call_of_the_command() {
        let p: FaultPlan = "init_vm:eagain@1,init_vm:eagain@2,init_vm:eintr@3"
            .parse()
            .unwrap();
        let hits: Vec<_> = (0..4).map(|_| p.check("KVM_TDX_INIT_VM")).collect();
        assert_eq!(
            hits,
            [
                Some(FaultAction::Again),
                Some(FaultAction::Again),
                Some(FaultAction::Interrupted),
                None
            ]
        );
    }

    #[test]
    fn nth_hits_once() {
        let p: FaultPlan = "init_vm:eagain@2".parse().unwrap();
        let hits: Vec<_> = (0..4).map(|_| p.check("KVM_TDX_INIT_VM")).collect();
        assert_eq!(hits, [None, Some(FaultAction::Again), None, None]);
        assert_eq!(p.check("KVM_TDX_FINALIZE_VM"), None);
    }

    #[test]
    fn bad_specs_name_the_rule() {
        for bad in [
            "x",
            ":eagain",
            "a:boom",
            "a:eagain@0",
            "a:eagain%101",
            "a:partial=",
            "a:fw=0",
            "a:fw=0x1ffffffff",
        ] {
            let e = bad.parse::<FaultPlan>().unwrap_err();
            assert_eq!(e.rule, bad, "{e}");
        }
    }

    #[test]
    fn percent_is_deterministic_per_seed() {
        let draw = |seed| {
            let p: FaultPlan = "*:eagain%50".parse().unwrap();
            p.seed(seed);
            (0..64).map(|_| p.check("X").is_some()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let hits = draw(7).iter().filter(|h| **h).count();
        assert!((16..=48).contains(&hits), "{hits} of 64 at 50 %");
    }
}
