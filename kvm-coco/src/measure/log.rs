//! The launch log: every measured operation with its content digest and the running digest
//! after it, so an offline calculator can replay a launch and a mismatch can be located.
//!
//! Entries are per 4 KiB page for SNP (PAGE_INFO chaining) and TDX (PAGE.ADD / MR.EXTEND),
//! and per region for SEV / SEV-ES. `contents` is the SNP `CONTENTS` field (SHA-384 of the
//! page, VMSA TSC fields zeroed), the SHA-384 of an extended TDX page, or the SHA-256 of a
//! SEV region; it is absent for pages whose content is not measured. `running` is the launch
//! digest after the operation. For TDX, `kind` `measured` means the page was added with the
//! MEASURE flag (MR.EXTEND), `unmeasured` that it was only added.
//!
//! JSON form (digests in lower-case hex):
//!
//! ```json
//! {"tee":"snp","initial":null,"digest":"…","entries":[
//!   {"step":0,"gpa":4292870144,"len":4096,"kind":"measured","origin":{"origin":"firmware"},
//!    "contents":"…","running":"…"}]}
//! ```

use psp_driver::digest::{SNP_DIGEST_SIZE, SnpLaunchDigest};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::calc::{LaunchDigest, MeasureError, MeasureOptions, measure};
use super::plan::{LaunchPlan, Origin, PageKind, Tee};

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&hex::encode(b)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|h| hex::decode(h).map_err(D::Error::custom))
                .transpose()
        }
    }
}

/// One measured operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Index of the plan step it belongs to.
    pub step: usize,
    /// Guest-physical address.
    pub gpa: u64,
    /// Bytes measured.
    pub len: u64,
    /// What was added (SNP page type / TDX MEASURE flag, see the module docs).
    pub kind: PageKind,
    /// Why it was added.
    pub origin: Origin,
    /// Content digest, if the content is measured.
    #[serde(with = "hex_bytes::opt")]
    pub contents: Option<Vec<u8>>,
    /// Launch digest after this operation.
    #[serde(with = "hex_bytes")]
    pub running: Vec<u8>,
}

/// A launch log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchLog {
    /// The technology.
    pub tee: Tee,
    /// SNP: the digest the chain started from, if not zero.
    #[serde(with = "hex_bytes::opt")]
    pub initial: Option<Vec<u8>>,
    /// The operations in order.
    pub entries: Vec<LogEntry>,
    /// The final measurement.
    #[serde(with = "hex_bytes")]
    pub digest: Vec<u8>,
}

/// Which field of an entry differs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The technology of the logs.
    Tee,
    /// The SNP initial digest.
    Initial,
    /// Entry GPA.
    Gpa,
    /// Entry length.
    Len,
    /// Entry kind.
    Kind,
    /// Entry content digest.
    Contents,
    /// Entry running digest.
    Running,
    /// One log has more entries.
    Missing,
    /// The final digests (entries agree).
    Digest,
}

/// Where two logs (or a log and a replay) first diverge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the first diverging entry (the entry count for [`Field::Digest`]).
    pub index: usize,
    /// The first differing field.
    pub field: Field,
    /// That entry in the first log.
    pub left: Option<LogEntry>,
    /// That entry in the second log.
    pub right: Option<LogEntry>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "logs diverge at entry {} ({:?})", self.index, self.field)?;
        if let Some(e) = self.left.as_ref().or(self.right.as_ref()) {
            write!(
                f,
                ": step {} gpa {:#x} {:?} {:?}",
                e.step, e.gpa, e.kind, e.origin
            )?;
        }
        Ok(())
    }
}

/// Why a replay failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Replaying from the log alone needs a digest chain (SNP); SEV and TDX stream their
    /// content, so they replay against a plan ([`LaunchLog::replay_plan`]).
    #[error("a {0} log cannot be replayed without the launch data; replay it against a plan")]
    NeedsPlan(Tee),
    /// An entry is malformed (wrong digest size, content digest missing or unexpected).
    #[error("entry {index}: {problem}")]
    Malformed {
        /// Entry index.
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The recomputed value differs from the log.
    #[error("{0}")]
    Diverged(Box<Divergence>),
    /// The plan could not be measured.
    #[error("plan: {0}")]
    Plan(#[from] MeasureError),
}

fn digest48(
    v: &[u8],
    index: usize,
    what: &'static str,
) -> Result<[u8; SNP_DIGEST_SIZE], ReplayError> {
    v.try_into().map_err(|_| ReplayError::Malformed {
        index,
        problem: what,
    })
}

impl LaunchLog {
    /// JSON text of the log.
    pub fn to_json(&self) -> String {
        // Serializing these plain types cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a log from JSON.
    ///
    /// # Errors
    /// The JSON error.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// Replays an SNP log from its own entries: recomputes the PAGE_INFO chain from each
    /// entry's GPA, kind and content digest, checks every running digest and the final
    /// digest, and returns the final digest.
    ///
    /// # Errors
    /// [`ReplayError::NeedsPlan`] for SEV / TDX logs; [`ReplayError::Diverged`] naming the
    /// first entry whose recorded running digest is not what the chain gives.
    pub fn replay(&self) -> Result<LaunchDigest, ReplayError> {
        if self.tee != Tee::Snp {
            return Err(ReplayError::NeedsPlan(self.tee));
        }
        let init = match &self.initial {
            Some(d) => digest48(d, 0, "initial digest is not 48 bytes")?,
            None => [0; SNP_DIGEST_SIZE],
        };
        let mut ld = SnpLaunchDigest::from_digest(init);
        for (index, e) in self.entries.iter().enumerate() {
            let t = e.kind.snp_page_type();
            let contents = match (&e.contents, t.measures_contents()) {
                (Some(c), true) => digest48(c, index, "content digest is not 48 bytes")?,
                (None, false) => [0; SNP_DIGEST_SIZE],
                (None, true) => {
                    return Err(ReplayError::Malformed {
                        index,
                        problem: "content digest missing",
                    });
                }
                (Some(_), false) => {
                    return Err(ReplayError::Malformed {
                        index,
                        problem: "content digest on an unmeasured page",
                    });
                }
            };
            ld.update(t, e.gpa, &contents);
            if ld.digest()[..] != e.running[..] {
                let mut right = e.clone();
                right.running = ld.digest().to_vec();
                return Err(ReplayError::Diverged(Box::new(Divergence {
                    index,
                    field: Field::Running,
                    left: Some(e.clone()),
                    right: Some(right),
                })));
            }
        }
        if ld.digest()[..] != self.digest[..] {
            return Err(ReplayError::Diverged(Box::new(Divergence {
                index: self.entries.len(),
                field: Field::Digest,
                left: None,
                right: None,
            })));
        }
        Ok(LaunchDigest::Sha384(ld.digest()))
    }

    /// Re-measures `plan` and checks that it produces exactly this log.
    ///
    /// # Errors
    /// [`ReplayError::Diverged`] naming the first diverging entry, or the plan's error.
    pub fn replay_plan(&self, plan: &LaunchPlan<'_>) -> Result<LaunchDigest, ReplayError> {
        let m = measure(
            plan,
            &MeasureOptions {
                log: true,
                progress: None,
            },
        )?;
        let Some(log) = m.log else {
            return Err(ReplayError::Malformed {
                index: 0,
                problem: "no log produced",
            });
        };
        match self.diff(&log) {
            Some(d) => Err(ReplayError::Diverged(Box::new(d))),
            None => Ok(m.digest),
        }
    }

    /// The first place where `self` and `other` differ, or `None` if they are identical.
    pub fn diff(&self, other: &LaunchLog) -> Option<Divergence> {
        let at = |index, field, l: Option<&LogEntry>, r: Option<&LogEntry>| {
            Some(Divergence {
                index,
                field,
                left: l.cloned(),
                right: r.cloned(),
            })
        };
        if self.tee != other.tee {
            return at(0, Field::Tee, None, None);
        }
        if self.initial != other.initial {
            return at(0, Field::Initial, None, None);
        }
        for (i, (a, b)) in self.entries.iter().zip(&other.entries).enumerate() {
            let field = if a.gpa != b.gpa {
                Field::Gpa
            } else if a.len != b.len {
                Field::Len
            } else if a.kind != b.kind {
                Field::Kind
            } else if a.contents != b.contents {
                Field::Contents
            } else if a.running != b.running {
                Field::Running
            } else {
                continue;
            };
            return at(i, field, Some(a), Some(b));
        }
        let n = self.entries.len().min(other.entries.len());
        if self.entries.len() != other.entries.len() {
            return at(n, Field::Missing, self.entries.get(n), other.entries.get(n));
        }
        (self.digest != other.digest).then_some(Divergence {
            index: n,
            field: Field::Digest,
            left: None,
            right: None,
        })
    }
}
