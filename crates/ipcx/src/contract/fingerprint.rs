//! The structural fingerprint: serde-reflection traces a type's serde shape, then a canonical
//! token stream of that shape is hashed with 64-bit FNV-1a (docs/PROTOCOL.md section 7.5).

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Format, Named, Registry, Tracer, TracerConfig, VariantFormat,
};

use super::ContractError;

/// Tracing passes allowed before a type is declared untraceable (each pass explores at least
/// one new enum variant, so real types need far fewer).
const MAX_PASSES: usize = 4096;

/// Fingerprints already computed in this process, by type.
static CACHE: Mutex<BTreeMap<TypeId, u64>> = Mutex::new(BTreeMap::new());

/// The structural fingerprint of `T`, computed once per process.
pub(super) fn structural<T: DeserializeOwned + 'static>() -> Result<u64, ContractError> {
    let cached = |map: &BTreeMap<TypeId, u64>| map.get(&TypeId::of::<T>()).copied();
    if let Some(fp) = cached(&CACHE.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(fp);
    }
    let untraceable = |detail: String| ContractError::Untraceable {
        type_name: std::any::type_name::<T>(),
        detail,
    };
    let (root, registry) = trace::<T>().map_err(untraceable)?;
    let fp = hash_shape(&root, &registry).map_err(untraceable)?;
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).insert(TypeId::of::<T>(), fp);
    Ok(fp)
}

/// Traces `T` until every enum variant reachable from it is known.
///
/// serde-reflection's `trace_simple_type` completes only the root enum; nested enums stay
/// incomplete. So each pass deserializes the root once and then clears the "incomplete" mark
/// of every enum name learned so far, which makes the next pass visit their next variant.
/// An enum first met during a pass is only learned from `registry()`'s error, so tracing
/// restarts with the larger name set until the registry is complete.
fn trace<T: DeserializeOwned>() -> Result<(Format, Registry), String> {
    // No samples: only types whose `Deserialize` accepts any value are traceable.
    let samples = serde_reflection::Samples::new();
    let mut enums: Vec<String> = Vec::new();
    let mut passes = 0;
    loop {
        let mut tracer = Tracer::new(TracerConfig::default());
        let root = loop {
            passes += 1;
            if passes > MAX_PASSES {
                return Err(format!("no complete trace after {MAX_PASSES} passes"));
            }
            let (root, _value) =
                tracer.trace_type_once::<T>(&samples).map_err(|e| e.to_string())?;
            let mut incomplete = false;
            for name in &enums {
                incomplete |= tracer.check_incomplete_enum(name).is_some();
            }
            if let Format::TypeName(name) = &root {
                incomplete |= tracer.check_incomplete_enum(name).is_some();
            }
            if !incomplete {
                break root;
            }
        };
        match tracer.registry() {
            Ok(registry) => return Ok((root, registry)),
            Err(serde_reflection::Error::MissingVariants(names))
                if names.iter().any(|n| !enums.contains(n)) =>
            {
                let new: Vec<String> = names.into_iter().filter(|n| !enums.contains(n)).collect();
                enums.extend(new);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// 64-bit FNV-1a, usable in constants.
pub(crate) const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// FNV-1a offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Hashes the canonical token stream of a traced shape (PROTOCOL.md section 7.5).
pub(crate) fn hash_shape(root: &Format, registry: &Registry) -> Result<u64, String> {
    let mut h = Hasher(fnv1a(FNV_OFFSET, b"ipcx-fp1"));
    h.format(root)?;
    h.count(registry.len());
    for (name, container) in registry {
        h.string(name);
        h.container(container)?;
    }
    Ok(h.0)
}

/// The token writer: every token goes straight into the FNV-1a state.
struct Hasher(u64);

impl Hasher {
    fn byte(&mut self, b: u8) {
        self.0 = fnv1a(self.0, &[b]);
    }

    fn count(&mut self, n: usize) {
        self.0 = fnv1a(self.0, &(n as u64).to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.count(s.len());
        self.0 = fnv1a(self.0, s.as_bytes());
    }

    fn formats(&mut self, formats: &[Format]) -> Result<(), String> {
        self.count(formats.len());
        formats.iter().try_for_each(|f| self.format(f))
    }

    fn fields(&mut self, fields: &[Named<Format>]) -> Result<(), String> {
        self.count(fields.len());
        for field in fields {
            self.string(&field.name);
            self.format(&field.value)?;
        }
        Ok(())
    }

    fn format(&mut self, format: &Format) -> Result<(), String> {
        let tag = match format {
            Format::Variable(_) => return Err("the trace left a format unknown".into()),
            Format::TypeName(name) => {
                self.byte(0x01);
                self.string(name);
                return Ok(());
            }
            Format::Option(inner) | Format::Seq(inner) => {
                self.byte(if matches!(format, Format::Option(_)) { 0x13 } else { 0x14 });
                return self.format(inner);
            }
            Format::Map { key, value } => {
                self.byte(0x15);
                self.format(key)?;
                return self.format(value);
            }
            Format::Tuple(items) => {
                self.byte(0x16);
                return self.formats(items);
            }
            Format::TupleArray { content, size } => {
                self.byte(0x17);
                self.count(*size);
                return self.format(content);
            }
            Format::Unit => 0x02,
            Format::Bool => 0x03,
            Format::I8 => 0x04,
            Format::I16 => 0x05,
            Format::I32 => 0x06,
            Format::I64 => 0x07,
            Format::I128 => 0x08,
            Format::U8 => 0x09,
            Format::U16 => 0x0a,
            Format::U32 => 0x0b,
            Format::U64 => 0x0c,
            Format::U128 => 0x0d,
            Format::F32 => 0x0e,
            Format::F64 => 0x0f,
            Format::Char => 0x10,
            Format::Str => 0x11,
            Format::Bytes => 0x12,
        };
        self.byte(tag);
        Ok(())
    }

    fn container(&mut self, container: &ContainerFormat) -> Result<(), String> {
        match container {
            ContainerFormat::UnitStruct => self.byte(0x20),
            ContainerFormat::NewTypeStruct(inner) => {
                self.byte(0x21);
                self.format(inner)?;
            }
            ContainerFormat::TupleStruct(items) => {
                self.byte(0x22);
                self.formats(items)?;
            }
            ContainerFormat::Struct(fields) => {
                self.byte(0x23);
                self.fields(fields)?;
            }
            ContainerFormat::Enum(variants) => {
                self.byte(0x24);
                self.count(variants.len());
                for (index, variant) in variants {
                    self.0 = fnv1a(self.0, &index.to_le_bytes());
                    self.string(&variant.name);
                    self.variant(&variant.value)?;
                }
            }
        }
        Ok(())
    }

    fn variant(&mut self, variant: &VariantFormat) -> Result<(), String> {
        match variant {
            VariantFormat::Variable(_) => {
                return Err("the trace left an enum variant unknown".into())
            }
            VariantFormat::Unit => self.byte(0x30),
            VariantFormat::NewType(inner) => {
                self.byte(0x31);
                self.format(inner)?;
            }
            VariantFormat::Tuple(items) => {
                self.byte(0x32);
                self.formats(items)?;
            }
            VariantFormat::Struct(fields) => {
                self.byte(0x33);
                self.fields(fields)?;
            }
        }
        Ok(())
    }
}
