//! Minimal reader of the kernel's BPF Type Format (BTF): header, type and
//! string sections, and struct/union member offsets by name.
//!
//! The eBPF program reads kernel structs (`task_struct`, `linux_binprm`,
//! `mm_struct`, `file`, `dentry`, ...) by raw offsets, and those offsets
//! differ between kernels. At load time user space asks this module for the
//! offsets in the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and hands
//! them to the program as constants, so one binary runs on every kernel of
//! the lab matrix.
//!
//! Why our own reader: aya-obj parses BTF but keeps struct members private,
//! and `btf-rs` is LGPL-2.1-or-later, a poor fit for a permissively licensed
//! static binary. We only need a small slice of BTF: walk every type record
//! (so every kind's trailing data must be skipped correctly), index
//! struct/union names, and resolve member paths.
//!
//! Input safety: the blob is external data. Every offset and length is
//! checked at parse time, type-id references are checked when followed, and
//! every walk over type chains or anonymous members has a depth bound, so a
//! truncated or corrupt blob yields a [`BtfError`], never a panic or an
//! unbounded loop.
//!
//! Format reference: the kernel's `Documentation/bpf/btf.rst` and
//! `include/uapi/linux/btf.h`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the running kernel exposes its own BTF (kernel 5.4+ with
/// `CONFIG_DEBUG_INFO_BTF=y`).
pub const SYS_FS_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `BTF_MAGIC`; its byte order in the blob tells the blob's endianness.
const MAGIC: u16 = 0xeb9f;
/// The only BTF version ever defined (`BTF_VERSION`).
const VERSION: u8 = 1;
/// Size of `struct btf_header` as of version 1. Newer writers may send a
/// longer header; `hdr_len` says how long, and section offsets are relative
/// to its end, so the extra bytes can be skipped.
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type` (name_off, info, size/type).
const TYPE_LEN: usize = 12;

/// Bound on typedef/modifier chains and on nesting of anonymous members.
/// Real kernels need a handful (e.g. `const volatile typedef ...`); the bound
/// only exists so a cyclic corrupt blob cannot loop or recurse forever.
const MAX_DEPTH: usize = 32;

/// Errors from parsing BTF or looking up types in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read btf from {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y, 5.4 or newer)"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("btf blob is truncated: {len} bytes, the header needs {need}")]
    TruncatedHeader { len: usize, need: usize },
    #[error("bad btf magic {found:#06x}, expected 0xeb9f in either byte order")]
    BadMagic { found: u16 },
    #[error("unsupported btf version {0}, only version 1 is known")]
    UnsupportedVersion(u8),
    #[error(
        "btf {section} section (offset {offset}, length {len}) runs past the end of the blob ({blob_len} bytes after the header)"
    )]
    SectionOutOfBounds {
        section: &'static str,
        offset: u32,
        len: u32,
        blob_len: usize,
    },
    #[error("btf type {id} is truncated at byte {offset} of the type section")]
    TruncatedType { id: u32, offset: usize },
    #[error("btf type {id} has unknown kind {kind}")]
    UnknownKind { id: u32, kind: u8 },
    #[error(
        "btf string offset {offset} (used by type {id}) is outside the string section ({len} bytes)"
    )]
    StringOutOfRange { id: u32, offset: u32, len: usize },
    #[error("btf string at offset {offset} is not nul-terminated utf-8")]
    BadString { offset: u32 },
    #[error("btf type {from} refers to type id {id}, but the blob has only {count} types")]
    BadTypeId { from: u32, id: u32, count: usize },
    #[error("struct {0} not found in btf (not a struct or union in this kernel)")]
    StructNotFound(String),
    #[error("{kind} {type_name} has no member `{member}`")]
    MemberNotFound {
        kind: &'static str,
        type_name: String,
        member: String,
    },
    #[error(
        "{type_name}.{path} is a bitfield ({bits} bits at bit offset {bit_offset}), it has no byte offset"
    )]
    Bitfield {
        type_name: String,
        path: String,
        bits: u32,
        bit_offset: u64,
    },
    #[error("{type_name}.{path} is not byte aligned (bit offset {bit_offset})")]
    Unaligned {
        type_name: String,
        path: String,
        bit_offset: u64,
    },
    #[error(
        "{type_name}.{path}: `{member}` has kind {kind}, not struct or union, so it has no members"
    )]
    NotComposite {
        type_name: String,
        path: String,
        member: String,
        kind: &'static str,
    },
    #[error("{type_name}.{path} is out of range of a 32-bit offset")]
    OffsetOverflow { type_name: String, path: String },
    #[error("btf type chain from type {id} is deeper than {MAX_DEPTH} or cyclic")]
    TooDeep { id: u32 },
    #[error("size of btf type {id} overflows 32 bits")]
    SizeOverflow { id: u32 },
    #[error("btf type {id} is a {kind}, which has no size")]
    NoSize { id: u32, kind: &'static str },
}

/// BTF kinds (`BTF_KIND_*`), numbered as in `include/uapi/linux/btf.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u8) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Ptr => "pointer",
            Kind::Array => "array",
            Kind::Struct => "struct",
            Kind::Union => "union",
            Kind::Enum => "enum",
            Kind::Fwd => "forward declaration",
            Kind::Typedef => "typedef",
            Kind::Volatile => "volatile",
            Kind::Const => "const",
            Kind::Restrict => "restrict",
            Kind::Func => "function",
            Kind::FuncProto => "function prototype",
            Kind::Var => "variable",
            Kind::Datasec => "data section",
            Kind::Float => "float",
            Kind::DeclTag => "decl tag",
            Kind::TypeTag => "type tag",
            Kind::Enum64 => "enum64",
        }
    }

    /// Bytes of kind-specific data following the 12-byte `btf_type`.
    /// Getting any of these wrong desynchronises the walk for every later
    /// type, so each is spelled out from `btf.h`.
    fn trailing_len(self, vlen: usize) -> usize {
        match self {
            // u32 encoding/offset/bits.
            Kind::Int => 4,
            // struct btf_array { type, index_type, nelems }.
            Kind::Array => 12,
            // struct btf_member { name_off, type, offset } per member.
            Kind::Struct | Kind::Union => 12 * vlen,
            // struct btf_enum { name_off, val }.
            Kind::Enum => 8 * vlen,
            // struct btf_param { name_off, type }.
            Kind::FuncProto => 8 * vlen,
            // struct btf_var { linkage }.
            Kind::Var => 4,
            // struct btf_var_secinfo { type, offset, size }.
            Kind::Datasec => 12 * vlen,
            // struct btf_decl_tag { component_idx }.
            Kind::DeclTag => 4,
            // struct btf_enum64 { name_off, val_lo32, val_hi32 }.
            Kind::Enum64 => 12 * vlen,
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => 0,
        }
    }

    /// Kinds that only qualify or rename another type; member lookups and
    /// sizes look through them.
    fn is_alias(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
    }
}

/// One decoded `btf_type` record. Trailing data stays in the type section
/// and is read on demand from `extra`.
#[derive(Debug, Clone, Copy)]
struct TypeRec {
    kind: Kind,
    kind_flag: bool,
    vlen: u16,
    /// `size` for INT/STRUCT/UNION/ENUM/ENUM64/FLOAT/DATASEC, `type` for the
    /// rest (the union in `struct btf_type`).
    size_or_type: u32,
    /// Byte offset of the trailing data in the type section.
    extra: usize,
}

/// A member found by [`Btf::find_member`]: where it starts and its type.
#[derive(Debug, Clone, Copy)]
struct Found {
    bit_offset: u64,
    type_id: u32,
    /// Non-zero for a bitfield declared with the `kind_flag` encoding.
    bitfield_size: u32,
}

/// Parsed BTF: the type records, the string section, and an index of
/// struct/union names. Owns copies of the sections so it outlives the blob.
#[derive(Debug)]
pub struct Btf {
    big_endian: bool,
    /// Type section bytes; `types[i]` describes type id `i + 1` (id 0 is void).
    type_data: Vec<u8>,
    types: Vec<TypeRec>,
    strings: Vec<u8>,
    /// Struct and union names to the first type id defining them.
    ///
    /// vmlinux BTF is deduplicated by pahole, but a name still appears more
    /// than once when translation units really define it differently, and
    /// forward declarations (FWD) share the name of the full definition. We
    /// keep the lowest id that is a full struct/union definition, the same
    /// choice libbpf's `btf__find_by_name_kind` makes, so our offsets agree
    /// with what `bpftool btf dump` shows first. The core kernel structs we
    /// read have a single definition.
    by_name: HashMap<Box<str>, u32>,
    /// Pointer width of the kernel that produced the blob. BTF does not
    /// record it; like libbpf we take it from the size of `long`, falling
    /// back to our own pointer width.
    ptr_size: u32,
}

impl Btf {
    /// Parses raw BTF (the kernel's vmlinux BTF blob: header, type section,
    /// string section; little or big endian by magic 0xeB9F).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let header = data.get(..HEADER_LEN).ok_or(BtfError::TruncatedHeader {
            len: data.len(),
            need: HEADER_LEN,
        })?;
        let raw_magic = [header[0], header[1]];
        let big_endian = if u16::from_le_bytes(raw_magic) == MAGIC {
            false
        } else if u16::from_be_bytes(raw_magic) == MAGIC {
            true
        } else {
            return Err(BtfError::BadMagic {
                found: u16::from_le_bytes(raw_magic),
            });
        };
        if header[2] != VERSION {
            return Err(BtfError::UnsupportedVersion(header[2]));
        }
        // header[3] is `flags`, unused by any version so far.
        let word = |i: usize| read_u32(header, i, big_endian).unwrap_or(0);
        let hdr_len = word(4) as usize;
        let (type_off, type_len, str_off, str_len) = (word(8), word(12), word(16), word(20));
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(BtfError::TruncatedHeader {
                len: data.len(),
                need: hdr_len.max(HEADER_LEN),
            });
        }
        let body = &data[hdr_len..];
        let type_data = section(body, "type", type_off, type_len)?;
        let strings = section(body, "string", str_off, str_len)?;

        let mut btf = Btf {
            big_endian,
            type_data: type_data.to_vec(),
            types: Vec::new(),
            strings: strings.to_vec(),
            by_name: HashMap::new(),
            ptr_size: size_of::<usize>() as u32,
        };
        btf.index_types()?;
        Ok(btf)
    }

    /// Reads and parses `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(SYS_FS_VMLINUX))
    }

    /// Reads and parses a raw BTF file (e.g. one extracted from a vmlinux).
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Btf::parse(&data)
    }

    /// Byte offset of a member path inside a named struct (or union), e.g.
    /// `("task_struct", "real_parent")` or `("file", "f_path.dentry")`.
    ///
    /// The path follows typedefs and const/volatile modifiers and descends
    /// through anonymous struct/union members transparently: `mm_struct`'s
    /// fields sit in an anonymous struct on 6.x kernels, and `qstr`'s
    /// `len`/`hash` in an anonymous union of a struct. It does not follow
    /// pointers: each step must be embedded in the previous one.
    ///
    /// Errors: struct not found; member not found (naming the struct and
    /// the path); the member is a bitfield or otherwise not byte aligned.
    pub fn member_offset(&self, type_name: &str, path: &str) -> Result<u32, BtfError> {
        let (bit_offset, _) = self.resolve_path(type_name, path)?;
        u32::try_from(bit_offset / 8).map_err(|_| BtfError::OffsetOverflow {
            type_name: type_name.to_owned(),
            path: path.to_owned(),
        })
    }

    /// Size in bytes of the member's type after resolving typedefs and
    /// modifiers, for sanity checks (e.g. that `mm_struct.arg_start` is 8
    /// bytes). Pointers have the kernel's pointer width.
    pub fn member_size(&self, type_name: &str, path: &str) -> Result<u32, BtfError> {
        let (_, type_id) = self.resolve_path(type_name, path)?;
        self.type_size(type_id)
    }

    /// Size in bytes of a named struct or union.
    pub fn struct_size(&self, type_name: &str) -> Result<u32, BtfError> {
        let id = self.struct_id(type_name)?;
        self.type_size(id)
    }

    /// Walks the type section once: decodes every record, checks it lies
    /// inside the section and that its names lie inside the string section,
    /// and builds the struct/union name index.
    fn index_types(&mut self) -> Result<(), BtfError> {
        let mut pos = 0usize;
        let mut long_size = None;
        while pos < self.type_data.len() {
            // Type ids are 1-based; the kernel caps them well below u32::MAX.
            let id = u32::try_from(self.types.len() + 1).map_err(|_| BtfError::TruncatedType {
                id: u32::MAX,
                offset: pos,
            })?;
            let truncated = || BtfError::TruncatedType { id, offset: pos };
            let name_off = self.u32_at(pos).ok_or_else(truncated)?;
            let info = self.u32_at(pos + 4).ok_or_else(truncated)?;
            let size_or_type = self.u32_at(pos + 8).ok_or_else(truncated)?;
            // info: vlen in bits 0-15, kind in bits 24-28, kind_flag in bit 31.
            let raw_kind = ((info >> 24) & 0x1f) as u8;
            let kind =
                Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, kind: raw_kind })?;
            let vlen = (info & 0xffff) as u16;
            let extra = pos + TYPE_LEN;
            let end = extra + kind.trailing_len(usize::from(vlen));
            if end > self.type_data.len() {
                return Err(truncated());
            }
            let rec = TypeRec {
                kind,
                kind_flag: info >> 31 == 1,
                vlen,
                size_or_type,
                extra,
            };
            self.check_name(id, name_off)?;
            match kind {
                Kind::Struct | Kind::Union => {
                    for i in 0..usize::from(vlen) {
                        let member_name = self.u32_at(extra + 12 * i).ok_or_else(truncated)?;
                        self.check_name(id, member_name)?;
                    }
                    let name = self.str_at(name_off)?;
                    if !name.is_empty() && !self.by_name.contains_key(name) {
                        let name: Box<str> = name.into();
                        self.by_name.insert(name, id);
                    }
                }
                Kind::Int if long_size.is_none() => {
                    let name = self.str_at(name_off)?;
                    if name == "long int" || name == "long unsigned int" {
                        long_size = Some(size_or_type);
                    }
                }
                _ => {}
            }
            self.types.push(rec);
            pos = end;
        }
        if let Some(size) = long_size.filter(|&s| s == 4 || s == 8) {
            self.ptr_size = size;
        }
        Ok(())
    }

    fn check_name(&self, id: u32, offset: u32) -> Result<(), BtfError> {
        if (offset as usize) < self.strings.len() {
            Ok(())
        } else {
            Err(BtfError::StringOutOfRange {
                id,
                offset,
                len: self.strings.len(),
            })
        }
    }

    fn u32_at(&self, offset: usize) -> Option<u32> {
        read_u32(&self.type_data, offset, self.big_endian)
    }

    /// The nul-terminated string at `offset` in the string section.
    fn str_at(&self, offset: u32) -> Result<&str, BtfError> {
        let bad = BtfError::BadString { offset };
        let tail = self.strings.get(offset as usize..).ok_or(bad)?;
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString { offset })?;
        std::str::from_utf8(&tail[..len]).map_err(|_| BtfError::BadString { offset })
    }

    fn get(&self, from: u32, id: u32) -> Result<&TypeRec, BtfError> {
        id.checked_sub(1)
            .and_then(|i| self.types.get(i as usize))
            .ok_or(BtfError::BadTypeId {
                from,
                id,
                count: self.types.len(),
            })
    }

    /// Follows typedefs and modifiers to the underlying type id.
    fn skip_aliases(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        for _ in 0..MAX_DEPTH {
            if cur == 0 {
                return Ok(0);
            }
            let rec = self.get(id, cur)?;
            if !rec.kind.is_alias() {
                return Ok(cur);
            }
            cur = rec.size_or_type;
        }
        Err(BtfError::TooDeep { id })
    }

    fn struct_id(&self, type_name: &str) -> Result<u32, BtfError> {
        self.by_name
            .get(type_name)
            .copied()
            .ok_or_else(|| BtfError::StructNotFound(type_name.to_owned()))
    }

    /// Resolves `type_name` + dotted `path` to (bit offset, member type id),
    /// rejecting bitfields and members not on a byte boundary.
    fn resolve_path(&self, type_name: &str, path: &str) -> Result<(u64, u32), BtfError> {
        let root = self.struct_id(type_name)?;
        let root_kind = self.get(0, root)?.kind.name();
        let mut current = root;
        let mut bit_offset = 0u64;
        let mut member_type = root;
        let not_found = || BtfError::MemberNotFound {
            kind: root_kind,
            type_name: type_name.to_owned(),
            member: path.to_owned(),
        };
        for (step, member) in path.split('.').enumerate() {
            if step > 0 {
                // Descend into the previous member; it must be embedded.
                current = self.skip_aliases(member_type)?;
                let rec = self.get(member_type, current)?;
                if !matches!(rec.kind, Kind::Struct | Kind::Union) {
                    let done: Vec<&str> = path.split('.').take(step).collect();
                    return Err(BtfError::NotComposite {
                        type_name: type_name.to_owned(),
                        path: path.to_owned(),
                        member: done.join("."),
                        kind: rec.kind.name(),
                    });
                }
            }
            if member.is_empty() {
                return Err(not_found());
            }
            let found = self
                .find_member(current, member, 0)?
                .ok_or_else(not_found)?;
            if found.bitfield_size != 0 {
                return Err(BtfError::Bitfield {
                    type_name: type_name.to_owned(),
                    path: path.to_owned(),
                    bits: found.bitfield_size,
                    bit_offset: bit_offset + found.bit_offset,
                });
            }
            bit_offset += found.bit_offset;
            member_type = found.type_id;
        }
        if let Some(bits) = self.legacy_bitfield_bits(member_type)? {
            return Err(BtfError::Bitfield {
                type_name: type_name.to_owned(),
                path: path.to_owned(),
                bits,
                bit_offset,
            });
        }
        if !bit_offset.is_multiple_of(8) {
            return Err(BtfError::Unaligned {
                type_name: type_name.to_owned(),
                path: path.to_owned(),
                bit_offset,
            });
        }
        Ok((bit_offset, member_type))
    }

    /// Finds `name` among the members of struct/union `id`, looking into
    /// anonymous struct/union members when it is not a direct member. C
    /// forbids a name clash between direct and anonymous-nested members, so
    /// the search order cannot change the answer for valid input.
    fn find_member(&self, id: u32, name: &str, depth: usize) -> Result<Option<Found>, BtfError> {
        if depth >= MAX_DEPTH {
            return Err(BtfError::TooDeep { id });
        }
        let rec = *self.get(0, id)?;
        let mut anonymous = Vec::new();
        for i in 0..usize::from(rec.vlen) {
            let at = rec.extra + 12 * i;
            let corrupt = || BtfError::TruncatedType { id, offset: at };
            let name_off = self.u32_at(at).ok_or_else(corrupt)?;
            let type_id = self.u32_at(at + 4).ok_or_else(corrupt)?;
            let raw_offset = self.u32_at(at + 8).ok_or_else(corrupt)?;
            // With kind_flag set, offset = bitfield_size << 24 | bit_offset;
            // without, it is the plain bit offset (bitfields then show up as
            // INT types with a bit width, see legacy_bitfield_bits).
            let member = if rec.kind_flag {
                Found {
                    bit_offset: u64::from(raw_offset & 0x00ff_ffff),
                    type_id,
                    bitfield_size: raw_offset >> 24,
                }
            } else {
                Found {
                    bit_offset: u64::from(raw_offset),
                    type_id,
                    bitfield_size: 0,
                }
            };
            let member_name = self.str_at(name_off)?;
            if member_name == name {
                return Ok(Some(member));
            }
            if member_name.is_empty() {
                anonymous.push(member);
            }
        }
        for outer in anonymous {
            let inner_id = self.skip_aliases(outer.type_id)?;
            if inner_id == 0 {
                continue;
            }
            if !matches!(self.get(id, inner_id)?.kind, Kind::Struct | Kind::Union) {
                continue;
            }
            if let Some(inner) = self.find_member(inner_id, name, depth + 1)? {
                return Ok(Some(Found {
                    bit_offset: outer.bit_offset + inner.bit_offset,
                    ..inner
                }));
            }
        }
        Ok(None)
    }

    /// For structs encoded without kind_flag, a bitfield member's type is an
    /// INT whose bit width or bit offset does not fill its size. Returns
    /// the width in that case.
    fn legacy_bitfield_bits(&self, type_id: u32) -> Result<Option<u32>, BtfError> {
        let id = self.skip_aliases(type_id)?;
        if id == 0 {
            return Ok(None);
        }
        let rec = self.get(type_id, id)?;
        if rec.kind != Kind::Int {
            return Ok(None);
        }
        // INT data: encoding in bits 24-27, offset in bits 16-23, width in 0-7.
        let data = self.u32_at(rec.extra).ok_or(BtfError::TruncatedType {
            id,
            offset: rec.extra,
        })?;
        let bits = data & 0xff;
        let offset = (data >> 16) & 0xff;
        let full = u64::from(rec.size_or_type) * 8;
        if offset != 0 || u64::from(bits) != full {
            Ok(Some(bits))
        } else {
            Ok(None)
        }
    }

    /// Size in bytes of a type, looking through aliases and arrays.
    fn type_size(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        let mut count = 1u32;
        for _ in 0..MAX_DEPTH {
            cur = self.skip_aliases(cur)?;
            if cur == 0 {
                return Err(BtfError::NoSize { id, kind: "void" });
            }
            let rec = self.get(id, cur)?;
            let unit = match rec.kind {
                Kind::Int
                | Kind::Struct
                | Kind::Union
                | Kind::Enum
                | Kind::Enum64
                | Kind::Float
                | Kind::Datasec => rec.size_or_type,
                Kind::Ptr => self.ptr_size,
                Kind::Array => {
                    let corrupt = BtfError::TruncatedType {
                        id: cur,
                        offset: rec.extra,
                    };
                    let elem = self.u32_at(rec.extra).ok_or(corrupt)?;
                    let nelems = self.u32_at(rec.extra + 8).ok_or(BtfError::TruncatedType {
                        id: cur,
                        offset: rec.extra,
                    })?;
                    count = count
                        .checked_mul(nelems)
                        .ok_or(BtfError::SizeOverflow { id })?;
                    cur = elem;
                    continue;
                }
                kind => {
                    return Err(BtfError::NoSize {
                        id: cur,
                        kind: kind.name(),
                    });
                }
            };
            return unit.checked_mul(count).ok_or(BtfError::SizeOverflow { id });
        }
        Err(BtfError::TooDeep { id })
    }
}

/// The `len` bytes at `offset` of the post-header body, or an error naming
/// the section.
fn section<'a>(
    body: &'a [u8],
    name: &'static str,
    offset: u32,
    len: u32,
) -> Result<&'a [u8], BtfError> {
    let start = offset as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| body.get(start..end))
        .ok_or(BtfError::SectionOutOfBounds {
            section: name,
            offset,
            len,
            blob_len: body.len(),
        })
}

fn read_u32(bytes: &[u8], offset: usize, big_endian: bool) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    // Raw kind numbers, as the builder writes them.
    const INT: u8 = 1;
    const PTR: u8 = 2;
    const ARRAY: u8 = 3;
    const STRUCT: u8 = 4;
    const UNION: u8 = 5;
    const ENUM: u8 = 6;
    const FWD: u8 = 7;
    const TYPEDEF: u8 = 8;
    const VOLATILE: u8 = 9;
    const CONST: u8 = 10;
    const RESTRICT: u8 = 11;
    const FUNC: u8 = 12;
    const FUNC_PROTO: u8 = 13;
    const VAR: u8 = 14;
    const DATASEC: u8 = 15;
    const FLOAT: u8 = 16;
    const DECL_TAG: u8 = 17;
    const TYPE_TAG: u8 = 18;
    const ENUM64: u8 = 19;

    /// Builds small BTF blobs byte by byte, the way pahole lays them out.
    struct Builder {
        big_endian: bool,
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Builder {
            Builder::with_endian(false)
        }

        fn with_endian(big_endian: bool) -> Builder {
            Builder {
                big_endian,
                types: Vec::new(),
                // Offset 0 is the empty string, as in every real blob.
                strings: vec![0],
                next_id: 1,
            }
        }

        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn w(&mut self, v: u32) {
            let bytes = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.types.extend_from_slice(&bytes);
        }

        fn raw(
            &mut self,
            name_off: u32,
            kind: u8,
            kind_flag: bool,
            vlen: u16,
            size_or_type: u32,
        ) -> u32 {
            let info = (u32::from(kind_flag) << 31) | (u32::from(kind) << 24) | u32::from(vlen);
            self.w(name_off);
            self.w(info);
            self.w(size_or_type);
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn ty(
            &mut self,
            name: &str,
            kind: u8,
            kind_flag: bool,
            vlen: u16,
            size_or_type: u32,
        ) -> u32 {
            let name_off = self.s(name);
            self.raw(name_off, kind, kind_flag, vlen, size_or_type)
        }

        /// INT with `bits` width at bit `offset` (a legacy bitfield when
        /// they do not fill `size`).
        fn int_bits(&mut self, name: &str, size: u32, bits: u32, offset: u32) -> u32 {
            let id = self.ty(name, INT, false, 0, size);
            self.w((offset << 16) | bits);
            id
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            self.int_bits(name, size, size * 8, 0)
        }

        fn alias(&mut self, kind: u8, name: &str, target: u32) -> u32 {
            self.ty(name, kind, false, 0, target)
        }

        fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
            let id = self.ty("", ARRAY, false, 0, 0);
            self.w(elem);
            self.w(index);
            self.w(nelems);
            id
        }

        /// STRUCT or UNION; members are (name, type, raw offset field).
        fn composite(
            &mut self,
            kind: u8,
            name: &str,
            size: u32,
            kind_flag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.ty(name, kind, kind_flag, members.len() as u16, size);
            for &(member, type_id, offset) in members {
                let name_off = self.s(member);
                self.w(name_off);
                self.w(type_id);
                self.w(offset);
            }
            id
        }

        fn st(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(STRUCT, name, size, false, members)
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let word = |out: &mut Vec<u8>, v: u32| {
                if self.big_endian {
                    out.extend_from_slice(&v.to_be_bytes());
                } else {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            };
            let magic = if self.big_endian {
                MAGIC.to_be_bytes()
            } else {
                MAGIC.to_le_bytes()
            };
            out.extend_from_slice(&magic);
            out.push(VERSION);
            out.push(0);
            word(&mut out, HEADER_LEN as u32);
            word(&mut out, 0);
            word(&mut out, self.types.len() as u32);
            word(&mut out, self.types.len() as u32);
            word(&mut out, self.strings.len() as u32);
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn parse(b: &Builder) -> Btf {
        Btf::parse(&b.build()).expect("hand-built blob parses")
    }

    /// `struct qstr` as on little-endian 6.x kernels, plus an `mm_struct`
    /// whose fields sit in an anonymous struct that does not start at 0.
    fn qstr_and_mm() -> Builder {
        let mut b = Builder::new();
        let u32_t = b.int("unsigned int", 4);
        let u64_t = b.int("long long unsigned int", 8);
        let ulong = b.int("long unsigned int", 8);
        let uchar = b.int("unsigned char", 1);
        let cuchar = b.alias(CONST, "", uchar);
        let name_ptr = b.alias(PTR, "", cuchar);
        let hash_len = b.st("", 8, &[("hash", u32_t, 0), ("len", u32_t, 32)]);
        let hash_union = b.composite(
            UNION,
            "",
            8,
            false,
            &[("", hash_len, 0), ("hash_len", u64_t, 0)],
        );
        b.st("qstr", 16, &[("", hash_union, 0), ("name", name_ptr, 64)]);
        let inner = b.st(
            "",
            24,
            &[
                ("mmap_base", ulong, 0),
                ("arg_start", ulong, 64),
                ("arg_end", ulong, 128),
            ],
        );
        b.st("mm_struct", 32, &[("users", u32_t, 0), ("", inner, 64)]);
        b
    }

    #[test]
    fn anonymous_struct_inside_anonymous_union_is_transparent() {
        let btf = parse(&qstr_and_mm());
        assert_eq!(btf.member_offset("qstr", "hash").expect("hash"), 0);
        assert_eq!(btf.member_offset("qstr", "len").expect("len"), 4);
        assert_eq!(btf.member_offset("qstr", "hash_len").expect("hash_len"), 0);
        assert_eq!(btf.member_offset("qstr", "name").expect("name"), 8);
        assert_eq!(btf.member_size("qstr", "len").expect("len"), 4);
        assert_eq!(btf.member_size("qstr", "hash_len").expect("hash_len"), 8);
        assert_eq!(btf.member_size("qstr", "name").expect("name"), 8);
        assert_eq!(btf.struct_size("qstr").expect("qstr"), 16);
    }

    #[test]
    fn anonymous_struct_offset_is_added_to_member_offset() {
        let btf = parse(&qstr_and_mm());
        assert_eq!(btf.member_offset("mm_struct", "users").expect("users"), 0);
        assert_eq!(
            btf.member_offset("mm_struct", "mmap_base")
                .expect("mmap_base"),
            8
        );
        assert_eq!(
            btf.member_offset("mm_struct", "arg_start")
                .expect("arg_start"),
            16
        );
        assert_eq!(
            btf.member_offset("mm_struct", "arg_end").expect("arg_end"),
            24
        );
        assert_eq!(
            btf.member_size("mm_struct", "arg_start")
                .expect("arg_start"),
            8
        );
    }

    #[test]
    fn typedef_and_modifier_chains_are_followed() {
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        let u32_t = b.alias(TYPEDEF, "__u32", uint);
        let u32_tt = b.alias(TYPEDEF, "u32", u32_t);
        let kuid = b.st("", 4, &[("val", u32_tt, 0)]);
        let kuid_t = b.alias(TYPEDEF, "kuid_t", kuid);
        let tagged = b.alias(TYPE_TAG, "rcu", kuid_t);
        let cv = b.alias(VOLATILE, "", tagged);
        let ccv = b.alias(CONST, "", cv);
        let restricted = b.alias(RESTRICT, "", ccv);
        let arr = b.array(u32_tt, uint, 4);
        b.st(
            "cred",
            28,
            &[
                ("usage", uint, 0),
                ("uid", ccv, 32),
                ("euid", restricted, 64),
                ("caps", arr, 96),
            ],
        );
        let btf = parse(&b);
        assert_eq!(btf.member_offset("cred", "uid").expect("uid"), 4);
        assert_eq!(btf.member_size("cred", "uid").expect("uid"), 4);
        // Descends through const volatile type_tag typedef to the struct.
        assert_eq!(btf.member_offset("cred", "euid.val").expect("euid.val"), 8);
        assert_eq!(btf.member_size("cred", "euid.val").expect("euid.val"), 4);
        assert_eq!(btf.member_size("cred", "caps").expect("caps"), 16);
        assert_eq!(btf.struct_size("cred").expect("cred"), 28);
    }

    #[test]
    fn every_kind_is_skipped_with_its_trailing_data() {
        for big_endian in [false, true] {
            let mut b = Builder::with_endian(big_endian);
            let int = b.int("int", 4);
            let ptr = b.alias(PTR, "", int);
            b.array(int, int, 3);
            b.composite(UNION, "u", 4, false, &[("a", int, 0), ("b", int, 0)]);
            b.ty("e", ENUM, false, 2, 4);
            b.w(b.strings.len() as u32 - 1);
            b.w(1);
            b.w(0);
            b.w(2);
            b.ty("fwd_only", FWD, false, 0, 0);
            b.alias(TYPEDEF, "int_t", int);
            b.alias(VOLATILE, "", int);
            b.alias(CONST, "", int);
            b.alias(RESTRICT, "", ptr);
            let proto = b.ty("", FUNC_PROTO, false, 2, int);
            b.w(0);
            b.w(int);
            b.w(0);
            b.w(ptr);
            b.alias(FUNC, "f", proto);
            let var = b.ty("v", VAR, false, 0, int);
            b.w(1);
            b.ty(".data", DATASEC, false, 1, 4);
            b.w(var);
            b.w(0);
            b.w(4);
            b.ty("double", FLOAT, false, 0, 8);
            b.ty("tag", DECL_TAG, false, 0, var);
            b.w(u32::MAX);
            b.alias(TYPE_TAG, "user", int);
            b.ty("e64", ENUM64, true, 1, 8);
            b.w(0);
            b.w(1);
            b.w(2);
            // Found only if every record above was skipped correctly.
            b.st("after", 8, &[("x", int, 0), ("y", int, 32)]);
            let btf = parse(&b);
            assert_eq!(
                btf.member_offset("after", "y").expect("y"),
                4,
                "big_endian={big_endian}"
            );
            assert_eq!(btf.struct_size("after").expect("after"), 8);
            assert_eq!(btf.struct_size("u").expect("u"), 4);
            assert_eq!(btf.types.len(), 19);
            assert!(matches!(
                btf.struct_size("fwd_only"),
                Err(BtfError::StructNotFound(_))
            ));
        }
    }

    #[test]
    fn bitfield_member_is_an_error() {
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        // kind_flag encoding: offset = bitfield_size << 24 | bit_offset.
        b.composite(
            STRUCT,
            "task_struct",
            8,
            true,
            &[("in_execve", uint, (1 << 24) | 3), ("pid", uint, 32)],
        );
        // Legacy encoding: the member's INT type itself is 3 bits wide.
        let three_bits = b.int_bits("unsigned int", 4, 3, 0);
        b.st("legacy", 8, &[("flags", three_bits, 0), ("full", uint, 32)]);
        let btf = parse(&b);
        let err = btf
            .member_offset("task_struct", "in_execve")
            .expect_err("bitfield");
        assert!(
            matches!(
                err,
                BtfError::Bitfield {
                    bits: 1,
                    bit_offset: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "task_struct.in_execve is a bitfield (1 bits at bit offset 3), it has no byte offset"
        );
        assert!(matches!(
            btf.member_size("task_struct", "in_execve"),
            Err(BtfError::Bitfield { .. })
        ));
        // A plain member of a kind_flag struct is unaffected.
        assert_eq!(btf.member_offset("task_struct", "pid").expect("pid"), 4);
        let err = btf
            .member_offset("legacy", "flags")
            .expect_err("legacy bitfield");
        assert!(matches!(err, BtfError::Bitfield { bits: 3, .. }), "{err:?}");
        assert_eq!(btf.member_offset("legacy", "full").expect("full"), 4);
    }

    #[test]
    fn unaligned_member_is_an_error() {
        let mut b = Builder::new();
        let uchar = b.int("unsigned char", 1);
        b.st("odd", 2, &[("c", uchar, 4)]);
        let err = parse(&b).member_offset("odd", "c").expect_err("unaligned");
        assert_eq!(err.to_string(), "odd.c is not byte aligned (bit offset 4)");
    }

    #[test]
    fn missing_member_message_names_struct_and_member() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.st("task_struct", 4, &[("pid", int, 0)]);
        let dentry = b.st("dentry", 8, &[("d_inode", int, 0)]);
        let path = b.st("path", 16, &[("mnt", int, 0), ("dentry", dentry, 64)]);
        b.st("file", 16, &[("f_path", path, 0)]);
        b.composite(UNION, "un", 4, false, &[("a", int, 0)]);
        let btf = parse(&b);
        let msg = |t: &str, p: &str| match btf.member_offset(t, p) {
            Ok(off) => panic!("{t}.{p} unexpectedly at {off}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            msg("task_struct", "loginuid"),
            "struct task_struct has no member `loginuid`"
        );
        assert_eq!(
            msg("file", "f_path.nope"),
            "struct file has no member `f_path.nope`"
        );
        assert_eq!(msg("un", "b"), "union un has no member `b`");
        assert_eq!(
            msg("task_struct", ""),
            "struct task_struct has no member ``"
        );
        assert_eq!(
            msg("file", "f_path."),
            "struct file has no member `f_path.`"
        );
        assert_eq!(
            msg("file", "f_path.mnt.x"),
            "file.f_path.mnt.x: `f_path.mnt` has kind int, not struct or union, so it has no members"
        );
        assert_eq!(
            msg("cred", "uid"),
            "struct cred not found in btf (not a struct or union in this kernel)"
        );
        assert_eq!(
            btf.member_offset("file", "f_path.dentry.d_inode")
                .expect("nested"),
            8
        );
    }

    #[test]
    fn first_full_definition_wins_over_forward_and_later_duplicates() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.ty("dup", FWD, false, 0, 0);
        b.st("dup", 8, &[("a", int, 32)]);
        b.st("dup", 16, &[("a", int, 64)]);
        let btf = parse(&b);
        assert_eq!(btf.struct_size("dup").expect("dup"), 8);
        assert_eq!(btf.member_offset("dup", "a").expect("a"), 4);
    }

    #[test]
    fn truncated_header_is_an_error() {
        let blob = qstr_and_mm().build();
        for len in 0..HEADER_LEN {
            let err = Btf::parse(&blob[..len]).expect_err("short header");
            assert!(
                matches!(err, BtfError::TruncatedHeader { .. }),
                "len {len}: {err:?}"
            );
        }
        assert_eq!(
            Btf::parse(&blob[..10]).expect_err("short").to_string(),
            "btf blob is truncated: 10 bytes, the header needs 24"
        );
        // hdr_len claims more than the blob holds.
        let mut long_header = blob.clone();
        long_header[4..8].copy_from_slice(&(blob.len() as u32 + 1).to_le_bytes());
        assert!(matches!(
            Btf::parse(&long_header),
            Err(BtfError::TruncatedHeader { .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_blob_is_an_error() {
        let blob = qstr_and_mm().build();
        for len in 0..blob.len() {
            assert!(
                Btf::parse(&blob[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        let err = Btf::parse(&blob[..blob.len() - 1]).expect_err("short strings");
        assert!(
            matches!(
                err,
                BtfError::SectionOutOfBounds {
                    section: "string",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn record_cut_by_type_section_length_is_an_error() {
        let mut blob = qstr_and_mm().build();
        let type_len = u32::from_le_bytes([blob[12], blob[13], blob[14], blob[15]]);
        blob[12..16].copy_from_slice(&(type_len - 4).to_le_bytes());
        let err = Btf::parse(&blob).expect_err("cut record");
        assert!(matches!(err, BtfError::TruncatedType { .. }), "{err:?}");
    }

    #[test]
    fn bad_magic_and_version_are_errors() {
        let mut blob = qstr_and_mm().build();
        blob[2] = 2;
        assert_eq!(
            Btf::parse(&blob).expect_err("version").to_string(),
            "unsupported btf version 2, only version 1 is known"
        );
        blob[0] = 0x7f;
        assert_eq!(
            Btf::parse(&blob).expect_err("magic").to_string(),
            "bad btf magic 0xeb7f, expected 0xeb9f in either byte order"
        );
    }

    #[test]
    fn string_offset_out_of_range_is_an_error() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.raw(1000, STRUCT, false, 0, 4);
        let err = Btf::parse(&b.build()).expect_err("type name");
        assert!(
            matches!(
                err,
                BtfError::StringOutOfRange {
                    id: 2,
                    offset: 1000,
                    ..
                }
            ),
            "{err:?}"
        );

        let mut b = Builder::new();
        let int2 = b.int("int", 4);
        assert_eq!(int, int2);
        b.ty("s", STRUCT, false, 1, 4);
        b.w(5000);
        b.w(int2);
        b.w(0);
        let err = Btf::parse(&b.build()).expect_err("member name");
        assert_eq!(
            err.to_string(),
            format!(
                "btf string offset 5000 (used by type 2) is outside the string section ({} bytes)",
                b.strings.len()
            )
        );
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let mut b = Builder::new();
        b.int("int", 4);
        b.st("s", 4, &[]);
        b.strings.pop();
        let err = Btf::parse(&b.build()).expect_err("no nul");
        assert!(matches!(err, BtfError::BadString { .. }), "{err:?}");
    }

    #[test]
    fn bad_type_ids_and_cycles_are_errors_not_hangs() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        // Typedef to itself: id 2.
        let looped = b.alias(TYPEDEF, "loop_t", 2);
        // Struct containing itself as an anonymous member: id 3.
        b.st("selfish", 4, &[("", 3, 0)]);
        b.st(
            "holder",
            12,
            &[("l", looped, 0), ("bad", 999, 32), ("i", int, 64)],
        );
        let btf = parse(&b);
        assert!(matches!(
            btf.member_size("holder", "l"),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_offset("holder", "l.x"),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_offset("selfish", "x"),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_size("holder", "bad"),
            Err(BtfError::BadTypeId { id: 999, .. })
        ));
        assert_eq!(btf.member_offset("holder", "i").expect("i"), 8);
    }

    #[test]
    fn random_corruption_never_panics() {
        let blob = qstr_and_mm().build();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let queries = [
            ("qstr", "len"),
            ("qstr", "name"),
            ("mm_struct", "arg_start"),
            ("mm_struct", "users.x"),
        ];
        let mut parsed = 0;
        for _ in 0..5000 {
            let mut bad = blob.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() % bad.len() as u64) as usize;
                bad[at] = next() as u8;
            }
            if let Ok(btf) = Btf::parse(&bad) {
                parsed += 1;
                for (t, p) in queries {
                    let _ = btf.member_offset(t, p);
                    let _ = btf.member_size(t, p);
                    let _ = btf.struct_size(t);
                }
            }
        }
        // Most single-byte hits land in names or offsets and still parse,
        // so lookups on corrupt types were exercised too.
        assert!(parsed > 100, "only {parsed} corrupt blobs parsed");
    }

    /// The host's vmlinux BTF, or None with a skip line. In CI its absence
    /// is a failure: the runners are expected to have BTF.
    fn host_btf() -> Option<(Vec<u8>, Btf)> {
        let path = Path::new(SYS_FS_VMLINUX);
        if !path.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{SYS_FS_VMLINUX} is missing in CI; the kernel needs CONFIG_DEBUG_INFO_BTF=y"
            );
            eprintln!(
                "skipped: {SYS_FS_VMLINUX} not present (kernel without CONFIG_DEBUG_INFO_BTF)"
            );
            return None;
        }
        let data = std::fs::read(path).expect("read vmlinux btf");
        let start = Instant::now();
        let btf = Btf::parse(&data).expect("parse vmlinux btf");
        eprintln!(
            "parsed {} bytes, {} types, {} struct/union names in {:?}",
            data.len(),
            btf.types.len(),
            btf.by_name.len(),
            start.elapsed()
        );
        Some((data, btf))
    }

    /// Every field the sensor reads, as (struct, member path).
    const SENSOR_FIELDS: &[(&str, &str)] = &[
        ("task_struct", "real_parent"),
        ("task_struct", "tgid"),
        ("task_struct", "pid"),
        ("task_struct", "cred"),
        ("task_struct", "mm"),
        ("task_struct", "fs"),
        ("task_struct", "loginuid"),
        ("task_struct", "sessionid"),
        ("task_struct", "start_boottime"),
        ("task_struct", "comm"),
        ("linux_binprm", "file"),
        ("linux_binprm", "filename"),
        ("linux_binprm", "interp"),
        ("linux_binprm", "argc"),
        ("linux_binprm", "mm"),
        ("mm_struct", "arg_start"),
        ("mm_struct", "arg_end"),
        ("mm_struct", "exe_file"),
        ("file", "f_path"),
        ("file", "f_path.dentry"),
        ("path", "mnt"),
        ("path", "dentry"),
        ("dentry", "d_parent"),
        ("dentry", "d_name"),
        ("dentry", "d_name.name"),
        ("qstr", "name"),
        ("qstr", "len"),
        ("mount", "mnt"),
        ("mount", "mnt_parent"),
        ("mount", "mnt_mountpoint"),
        ("vfsmount", "mnt_root"),
        ("fs_struct", "root"),
        ("fs_struct", "pwd"),
        ("cred", "uid"),
        ("cred", "gid"),
        ("cred", "euid"),
        ("cred", "egid"),
    ];

    #[test]
    fn host_vmlinux_has_every_sensor_field() {
        let Some((_, btf)) = host_btf() else { return };
        for &(ty, path) in SENSOR_FIELDS {
            let offset = btf
                .member_offset(ty, path)
                .unwrap_or_else(|e| panic!("{ty}.{path}: {e}"));
            let size = btf
                .member_size(ty, path)
                .unwrap_or_else(|e| panic!("{ty}.{path}: {e}"));
            let total = btf.struct_size(ty).unwrap_or_else(|e| panic!("{ty}: {e}"));
            eprintln!("{ty}.{path} = {offset} (size {size})");
            assert!(
                offset + size <= total,
                "{ty}.{path} at {offset}+{size} past size {total}"
            );
        }
    }

    /// Values checked against `bpftool btf dump file /sys/kernel/btf/vmlinux
    /// format raw` on the dev host (6.18) that hold on every x86_64 kernel
    /// of the lab matrix. Offsets that move between kernels (task_struct's)
    /// are checked by consistency instead.
    #[test]
    fn host_vmlinux_matches_bpftool_and_is_consistent() {
        let Some((_, btf)) = host_btf() else { return };
        let off = |t: &str, p: &str| btf.member_offset(t, p).unwrap_or_else(|e| panic!("{e}"));
        let size = |t: &str, p: &str| btf.member_size(t, p).unwrap_or_else(|e| panic!("{e}"));
        // bpftool: STRUCT 'qstr' size=16 vlen=2; '(anon)' bits_offset=0; 'name' bits_offset=64.
        assert_eq!(btf.struct_size("qstr").expect("qstr"), 16);
        assert_eq!(off("qstr", "name"), 8);
        #[cfg(target_endian = "little")]
        assert_eq!((off("qstr", "hash"), off("qstr", "len")), (0, 4));
        // bpftool: STRUCT 'path' size=16 vlen=2; 'mnt' 0; 'dentry' 64.
        assert_eq!(btf.struct_size("path").expect("path"), 16);
        assert_eq!((off("path", "mnt"), off("path", "dentry")), (0, 8));
        // bpftool: 'uid' type_id=475 (kuid_t) bits_offset=64 in 'cred'.
        assert_eq!(size("cred", "uid"), 4);
        assert_eq!(size("cred", "euid"), 4);
        assert_eq!(size("task_struct", "loginuid"), 4);
        assert_eq!(size("task_struct", "comm"), 16);
        assert_eq!(size("mm_struct", "arg_start"), 8);
        assert_eq!(size("mm_struct", "arg_end"), 8);
        assert_eq!(size("task_struct", "real_parent"), 8);
        assert_eq!(size("task_struct", "start_boottime"), 8);
        // mm_struct's fields live in an anonymous struct on 6.x.
        assert!(off("mm_struct", "arg_end") > off("mm_struct", "arg_start"));

        assert_eq!(
            off("file", "f_path.dentry"),
            off("file", "f_path") + off("path", "dentry")
        );
        assert_eq!(
            off("dentry", "d_name.name"),
            off("dentry", "d_name") + off("qstr", "name")
        );
        assert_eq!(
            off("mount", "mnt.mnt_root"),
            off("mount", "mnt") + off("vfsmount", "mnt_root")
        );
        assert_eq!(
            off("fs_struct", "pwd.dentry"),
            off("fs_struct", "pwd") + off("path", "dentry")
        );
        assert_eq!(off("task_struct", "tgid"), off("task_struct", "pid") + 4);

        // bpftool: 'sched_reset_on_fork' bits_offset=9504 bitfield_size=1.
        assert!(matches!(
            btf.member_offset("task_struct", "sched_reset_on_fork"),
            Err(BtfError::Bitfield { bits: 1, .. })
        ));
        assert_eq!(
            btf.member_offset("task_struct", "no_such_member")
                .expect_err("missing")
                .to_string(),
            "struct task_struct has no member `no_such_member`"
        );
    }

    #[test]
    fn host_vmlinux_every_truncation_is_an_error() {
        let Some((data, _)) = host_btf() else { return };
        // Cuts inside the header, the type section and the string section.
        for len in [0, 1, 23, 24, 25, 1000, data.len() / 2, data.len() - 1] {
            assert!(
                Btf::parse(&data[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }
}
