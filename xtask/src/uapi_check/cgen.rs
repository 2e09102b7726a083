//! Turns the `kvm_coco_uapi::manifest` into a C file of `_Static_assert`s.
//!
//! Every assertion carries a message `uapi-check: <key> (...)`, where `<key>` names exactly
//! one checked property (e.g. `field-offset kvm_sev_snp_launch_finish.host_data` or
//! `constant KVM_EXIT_SNP_REQ_CERTS`), so a gcc failure can be traced to the item.

use kvm_coco_uapi::manifest::{self, BitfieldEntry, CType, FieldKind};
use std::fmt::Write as _;

/// An owned copy of the manifest (so the self-test can corrupt it in memory).
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Structs.
    pub structs: Vec<Struct>,
    /// Constants.
    pub constants: Vec<Constant>,
    /// Expressions.
    pub exprs: Vec<Expr>,
    /// Bitfield members.
    pub bitfields: Vec<BitfieldEntry>,
}

/// One struct.
#[derive(Clone, Debug)]
pub struct Struct {
    /// How it maps to C.
    pub c_type: CType,
    /// Rust name.
    pub rust_name: &'static str,
    /// Size.
    pub size: usize,
    /// Alignment.
    pub align: usize,
    /// Fields.
    pub fields: Vec<Field>,
}

/// One field.
#[derive(Clone, Debug)]
pub struct Field {
    /// C name.
    pub name: &'static str,
    /// Offset.
    pub offset: usize,
    /// Size.
    pub size: usize,
    /// Kind.
    pub kind: FieldKind,
}

/// One constant.
#[derive(Clone, Debug)]
pub struct Constant {
    /// Kernel name.
    pub name: &'static str,
    /// Value.
    pub value: i128,
    /// Rust type.
    pub rust_type: &'static str,
}

/// One expression.
#[derive(Clone, Debug)]
pub struct Expr {
    /// Rust-side name.
    pub name: &'static str,
    /// C expression.
    pub c_expr: &'static str,
    /// Expected value.
    pub value: i128,
}

/// Counts of what a generated file checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Structs (each with size and alignment).
    pub structs: usize,
    /// Named fields (offset and size each).
    pub fields: usize,
    /// Bitfield / padding / anonymous-union fields not checkable by name.
    pub unnamed_fields: usize,
    /// Constants.
    pub constants: usize,
    /// Expressions.
    pub exprs: usize,
    /// `_Static_assert`s emitted.
    pub asserts: usize,
}

impl Manifest {
    /// Copies the crate's manifest.
    pub fn from_crate() -> Self {
        Self {
            structs: manifest::structs()
                .map(|s| Struct {
                    c_type: s.c_type,
                    rust_name: s.rust_name,
                    size: s.size,
                    align: s.align,
                    fields: s
                        .fields
                        .iter()
                        .map(|f| Field {
                            name: f.name,
                            offset: f.offset,
                            size: f.size,
                            kind: f.kind,
                        })
                        .collect(),
                })
                .collect(),
            constants: manifest::constants()
                .map(|c| Constant {
                    name: c.name,
                    value: c.value,
                    rust_type: c.rust_type,
                })
                .collect(),
            exprs: manifest::exprs()
                .map(|e| Expr {
                    name: e.name,
                    c_expr: e.c_expr,
                    value: e.value,
                })
                .collect(),
            bitfields: manifest::bitfields().copied().collect(),
        }
    }
}

/// The key used in messages for a struct, e.g. `kvm_sev_cmd` or `kvm_run.memory_fault`.
pub fn struct_key(c: &CType) -> String {
    match c {
        CType::Struct(n) | CType::Prefix(n) => (*n).to_string(),
        CType::Member { outer, member } => format!("{outer}.{member}"),
    }
}

fn c_int_type(rust: &str) -> Result<(&'static str, u128), String> {
    Ok(match rust {
        "u8" => ("__u8", u8::MAX as u128),
        "u16" => ("__u16", u16::MAX as u128),
        "u32" => ("__u32", u32::MAX as u128),
        "u64" => ("__u64", u64::MAX as u128),
        "i32" => ("__s32", i32::MAX as u128),
        "i64" => ("__s64", i64::MAX as u128),
        other => return Err(format!("constant of unsupported Rust type {other}")),
    })
}

fn c_literal(v: i128) -> String {
    if v < 0 {
        format!("({v}LL)")
    } else {
        format!("{v}ULL")
    }
}

/// `sizeof` the struct (`field == None`) or of one of its fields.
fn c_sizeof(c: &CType, field: Option<&str>) -> String {
    match (c, field) {
        (CType::Struct(n) | CType::Prefix(n), None) => format!("sizeof(struct {n})"),
        (CType::Struct(n) | CType::Prefix(n), Some(f)) => format!("sizeof(((struct {n} *)0)->{f})"),
        (CType::Member { outer, member }, None) => {
            format!("sizeof(((struct {outer} *)0)->{member})")
        }
        (CType::Member { outer, member }, Some(f)) => {
            format!("sizeof(((struct {outer} *)0)->{member}.{f})")
        }
    }
}

/// The alignment of the struct.
fn c_alignof(c: &CType) -> String {
    match c {
        CType::Struct(n) | CType::Prefix(n) => format!("_Alignof(struct {n})"),
        CType::Member { outer, member } => format!("__alignof__(((struct {outer} *)0)->{member})"),
    }
}

/// The offset the struct starts at within its C container (0 unless a union member).
fn c_base(c: &CType) -> String {
    match c {
        CType::Struct(_) | CType::Prefix(_) => "0".into(),
        CType::Member { outer, member } => format!("offsetof(struct {outer}, {member})"),
    }
}

/// The absolute `offsetof` of a field.
fn c_offsetof(c: &CType, f: &str) -> String {
    match c {
        CType::Struct(n) | CType::Prefix(n) => format!("offsetof(struct {n}, {f})"),
        CType::Member { outer, member } => format!("offsetof(struct {outer}, {member}.{f})"),
    }
}

struct Gen {
    out: String,
    counts: Counts,
}

impl Gen {
    fn assert(&mut self, cond: &str, key: &str, detail: &str) {
        // Keys and details are made of C identifiers, digits and punctuation without quotes.
        let _ = writeln!(
            self.out,
            "_Static_assert({cond}, \"uapi-check: {key} ({detail})\");"
        );
        self.counts.asserts += 1;
    }
}

/// Generates the C source. The `#include`s cover every header the manifest refers to.
pub fn generate(m: &Manifest) -> Result<(String, Counts), String> {
    let mut g = Gen {
        out: String::new(),
        counts: Counts::default(),
    };
    g.out.push_str(
        "/* Generated by `cargo xtask uapi-check` from kvm_coco_uapi::manifest. */\n\
         #include <stddef.h>\n#include <linux/types.h>\n#include <linux/kvm.h>\n\
         #include <linux/kvm_para.h>\n#include <linux/psp-sev.h>\n\n",
    );
    for s in &m.structs {
        let key = struct_key(&s.c_type);
        let rust = s.rust_name;
        g.counts.structs += 1;
        let size_expr = c_sizeof(&s.c_type, None);
        let align_expr = c_alignof(&s.c_type);
        let base = c_base(&s.c_type);
        let sizeof_field = |f: &str| c_sizeof(&s.c_type, Some(f));
        let offset_of = |f: &str| c_offsetof(&s.c_type, f);
        if matches!(s.c_type, CType::Prefix(_)) {
            g.assert(
                &format!("{size_expr} >= {}", s.size),
                &format!("size {key}"),
                &format!("Rust {rust} prefix = {}", s.size),
            );
        } else {
            g.assert(
                &format!("{size_expr} == {}", s.size),
                &format!("size {key}"),
                &format!("Rust {rust} = {}", s.size),
            );
        }
        g.assert(
            &format!("{align_expr} == {}", s.align),
            &format!("align {key}"),
            &format!("Rust {rust} = {}", s.align),
        );
        for f in &s.fields {
            if f.kind != FieldKind::Named {
                g.counts.unnamed_fields += 1;
                continue;
            }
            g.counts.fields += 1;
            let fname = f.name;
            g.assert(
                &format!("{} - {base} == {}", offset_of(fname), f.offset),
                &format!("field-offset {key}.{fname}"),
                &format!("Rust {rust}.{fname} = {}", f.offset),
            );
            g.assert(
                &format!("{} == {}", sizeof_field(fname), f.size),
                &format!("field-size {key}.{fname}"),
                &format!("Rust {rust}.{fname} = {}", f.size),
            );
        }
    }
    g.out.push('\n');
    for c in &m.constants {
        let (ty, max) = c_int_type(c.rust_type)?;
        let name = c.name;
        g.counts.constants += 1;
        g.assert(
            &format!("({ty})({name}) == ({ty}){}", c_literal(c.value)),
            &format!("constant {name}"),
            &format!("Rust {} = {:#x}", c.rust_type, c.value),
        );
        // The cast above must not hide high bits: a non-negative C value must fit the type.
        g.assert(
            &format!("({name}) < 0 || (unsigned long long)({name}) <= {max}ULL"),
            &format!("constant-range {name}"),
            &format!("fits {}", c.rust_type),
        );
    }
    g.out.push('\n');
    for e in &m.exprs {
        g.counts.exprs += 1;
        g.assert(
            &format!("({}) == {}", e.c_expr, c_literal(e.value)),
            &format!("expr {}", e.name),
            &format!("Rust = {}", e.value),
        );
    }
    Ok((g.out, g.counts))
}

/// Extracts the keys of failed assertions from gcc's diagnostics.
pub fn failed_keys(stderr: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in stderr
        .lines()
        .filter(|l| l.contains("static assertion failed"))
    {
        if let Some(rest) = line.split("\"uapi-check: ").nth(1) {
            let msg = rest.trim_end_matches('"');
            let key = msg.split(" (").next().unwrap_or(msg);
            keys.push(key.to_string());
        }
    }
    keys
}

/// Generates a C program that sets each bitfield member to all-ones in a zeroed struct and
/// prints `uapi-check: bitfield <struct>.<member> ...` for every member whose bits differ
/// from the record (exit status 1 if any).
pub fn generate_bitfield_program(m: &Manifest) -> String {
    let mut out = String::from(
        "/* Generated by `cargo xtask uapi-check` from kvm_coco_uapi::manifest. */\n\
         #include <stdio.h>\n#include <string.h>\n#include <stddef.h>\n\
         #include <linux/types.h>\n#include <linux/kvm.h>\n#include <linux/psp-sev.h>\n\n\
         static int fails;\n\
         static void check(const char *key, const unsigned char *p, size_t n, size_t off,\n\
                           size_t sz, unsigned bit, unsigned width) {\n\
         \tunsigned long long got = 0, want;\n\
         \tsize_t i;\n\
         \tfor (i = 0; i < sz && off + i < n; i++) got |= (unsigned long long)p[off + i] << (8 * i);\n\
         \twant = (width >= 64 ? ~0ULL : ((1ULL << width) - 1)) << bit;\n\
         \tfor (i = 0; i < n; i++) if ((i < off || i >= off + sz) && p[i]) got = ~0ULL;\n\
         \tif (got != want) {\n\
         \t\tprintf(\"uapi-check: bitfield %s (C sets %#llx, Rust expects %#llx)\\n\", key, got, want);\n\
         \t\tfails++;\n\
         \t}\n\
         }\n\nint main(void) {\n",
    );
    for b in &m.bitfields {
        let (c, mem) = (b.c_struct, b.member);
        let _ = writeln!(
            out,
            "\t{{ struct {c} s; memset(&s, 0, sizeof s); s.{mem} = ~0ULL; \
             check(\"{c}.{mem}\", (const unsigned char *)&s, sizeof s, {}, {}, {}, {}); }}",
            b.storage_offset, b.storage_size, b.bit, b.width
        );
    }
    out.push_str("\treturn fails ? 1 : 0;\n}\n");
    out
}

/// Extracts the keys reported by the bitfield program.
pub fn failed_bitfields(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("uapi-check: bitfield "))
        .map(|rest| format!("bitfield {}", rest.split(" (").next().unwrap_or(rest)))
        .collect()
}
