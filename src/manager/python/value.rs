//! Serde to and from the Python data model: what Rust proxies of a Python
//! manager's objects store and read.
//!
//! Integers, floats, `bool`, strings, byte strings (`serde_bytes` or
//! `Bytes`), `()`/`None`, sequences (`list`), tuples (`tuple`), maps
//! (`dict`); a struct is a `dict` of its field names, a unit enum variant
//! its name, any other variant `{name: value}`. Reading, a `list`, `tuple`
//! or `set` fills any sequence, and an integer that fits fills any integer
//! type.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use super::pickle::Py;
use crate::error::Error;

/// A conversion error.
#[derive(Debug)]
pub(crate) struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

impl From<ValueError> for Error {
    fn from(e: ValueError) -> Error {
        Error::Codec(format!("python value: {}", e.0))
    }
}

/// The Python value of `v`.
pub(crate) fn to_py<T: Serialize + ?Sized>(v: &T) -> Result<Py, Error> {
    Ok(v.serialize(ToPy)?)
}

/// `T` from a Python value.
pub(crate) fn from_py<T: de::DeserializeOwned>(v: Py) -> Result<T, Error> {
    Ok(T::deserialize(v)?)
}

// ------------------------------------------------------------------ to Python

struct ToPy;

/// A sequence, tuple or struct being serialized.
struct Seq {
    items: Vec<Py>,
    tuple: bool,
    /// A variant's name: the result is `{name: items}`.
    variant: Option<&'static str>,
}

struct Map {
    items: Vec<(Py, Py)>,
    key: Option<Py>,
    variant: Option<&'static str>,
}

fn wrap(variant: Option<&'static str>, v: Py) -> Py {
    match variant {
        Some(name) => Py::Dict(vec![(Py::Str(name.into()), v)]),
        None => v,
    }
}

impl ser::Serializer for ToPy {
    type Ok = Py;
    type Error = ValueError;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Seq;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Map;

    fn serialize_bool(self, v: bool) -> Result<Py, ValueError> {
        Ok(Py::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Py, ValueError> {
        Ok(Py::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Py, ValueError> {
        Ok(Py::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Py, ValueError> {
        Ok(Py::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Py, ValueError> {
        Ok(Py::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Py, ValueError> {
        Ok(big(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Py, ValueError> {
        Ok(Py::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Py, ValueError> {
        Ok(Py::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Py, ValueError> {
        Ok(Py::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Py, ValueError> {
        Ok(big(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<Py, ValueError> {
        i128::try_from(v)
            .map(big)
            .map_err(|_| ValueError("a u128 over i128::MAX".into()))
    }
    fn serialize_f32(self, v: f32) -> Result<Py, ValueError> {
        Ok(Py::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Py, ValueError> {
        Ok(Py::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Py, ValueError> {
        Ok(Py::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Py, ValueError> {
        Ok(Py::Str(v.into()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Py, ValueError> {
        Ok(Py::Bytes(v.into()))
    }
    fn serialize_none(self) -> Result<Py, ValueError> {
        Ok(Py::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Py, ValueError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Py, ValueError> {
        Ok(Py::None)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Py, ValueError> {
        Ok(Py::None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Py, ValueError> {
        Ok(Py::Str(variant.into()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Py, ValueError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Py, ValueError> {
        Ok(wrap(Some(variant), v.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, ValueError> {
        Ok(Seq {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            tuple: false,
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, ValueError> {
        Ok(Seq {
            items: Vec::with_capacity(len.min(4096)),
            tuple: true,
            variant: None,
        })
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, ValueError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq, ValueError> {
        let mut s = self.serialize_tuple(len)?;
        s.variant = Some(variant);
        Ok(s)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map, ValueError> {
        Ok(Map {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map, ValueError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Map, ValueError> {
        let mut m = self.serialize_map(Some(len))?;
        m.variant = Some(variant);
        Ok(m)
    }
}

fn big(v: i128) -> Py {
    match i64::try_from(v) {
        Ok(i) => Py::Int(i),
        Err(_) => {
            let bytes = v.to_le_bytes();
            let mut n = 16;
            while n > 1 {
                let last = bytes[n - 1];
                let prev_sign = bytes[n - 2] & 0x80 != 0;
                if (v < 0 && last == 0xff && prev_sign) || (v >= 0 && last == 0 && !prev_sign) {
                    n -= 1;
                } else {
                    break;
                }
            }
            Py::BigInt(bytes[..n].to_vec())
        }
    }
}

impl Seq {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.items.push(v.serialize(ToPy)?);
        Ok(())
    }
    fn done(self) -> Py {
        let v = if self.tuple {
            Py::Tuple(self.items)
        } else {
            Py::List(self.items)
        };
        wrap(self.variant, v)
    }
}

/// The four serde sequence forms are one `Seq`: each element is pushed, and
/// the end makes the list (or tuple).
macro_rules! seq_forms {
    ($($form:ident :: $element:ident),*) => {$(
        impl ser::$form for Seq {
            type Ok = Py;
            type Error = ValueError;
            fn $element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
                self.push(v)
            }
            fn end(self) -> Result<Py, ValueError> {
                Ok(self.done())
            }
        }
    )*};
}

seq_forms!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl Map {
    fn done(self) -> Py {
        wrap(self.variant, Py::Dict(self.items))
    }
}

impl ser::SerializeMap for Map {
    type Ok = Py;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), ValueError> {
        self.key = Some(k.serialize(ToPy)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        let k = self
            .key
            .take()
            .ok_or_else(|| ValueError("a map value without a key".into()))?;
        self.items.push((k, v.serialize(ToPy)?));
        Ok(())
    }
    fn end(self) -> Result<Py, ValueError> {
        Ok(self.done())
    }
}

/// A struct (or struct variant) is a dict keyed by its field names.
macro_rules! struct_forms {
    ($($form:ident),*) => {$(
        impl ser::$form for Map {
            type Ok = Py;
            type Error = ValueError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                v: &T,
            ) -> Result<(), ValueError> {
                self.items.push((Py::Str(name.into()), v.serialize(ToPy)?));
                Ok(())
            }
            fn end(self) -> Result<Py, ValueError> {
                Ok(self.done())
            }
        }
    )*};
}

struct_forms!(SerializeStruct, SerializeStructVariant);

// ------------------------------------------------------------------ from Python

impl<'de> IntoDeserializer<'de, ValueError> for Py {
    type Deserializer = Py;
    fn into_deserializer(self) -> Py {
        self
    }
}

impl Py {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Py::None => de::Unexpected::Unit,
            Py::Bool(b) => de::Unexpected::Bool(*b),
            Py::Int(i) => de::Unexpected::Signed(*i),
            Py::Float(f) => de::Unexpected::Float(*f),
            Py::Str(s) => de::Unexpected::Str(s),
            Py::Bytes(b) | Py::ByteArray(b) => de::Unexpected::Bytes(b),
            Py::List(_) | Py::Tuple(_) | Py::Set(_) | Py::FrozenSet(_) => de::Unexpected::Seq,
            Py::Dict(_) => de::Unexpected::Map,
            Py::BigInt(_) | Py::Slice(_) => de::Unexpected::Other("a Python value"),
        }
    }
}

/// The value of a big integer, if it fits an `i128`.
fn big_value(b: &[u8]) -> Option<i128> {
    if b.len() > 16 {
        return None;
    }
    let neg = b.last().is_some_and(|x| x & 0x80 != 0);
    let mut buf = if neg { [0xff; 16] } else { [0; 16] };
    buf[..b.len()].copy_from_slice(b);
    Some(i128::from_le_bytes(buf))
}

impl<'de> de::Deserializer<'de> for Py {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        match self {
            Py::None => v.visit_unit(),
            Py::Bool(b) => v.visit_bool(b),
            Py::Int(i) => v.visit_i64(i),
            Py::BigInt(b) => match big_value(&b) {
                Some(x) => match u64::try_from(x) {
                    Ok(u) => v.visit_u64(u),
                    Err(_) => v.visit_i128(x),
                },
                None => Err(de::Error::custom("an integer wider than 128 bits")),
            },
            Py::Float(f) => v.visit_f64(f),
            Py::Str(s) => v.visit_string(s),
            Py::Bytes(b) | Py::ByteArray(b) => v.visit_byte_buf(b),
            Py::List(items) | Py::Tuple(items) | Py::Set(items) | Py::FrozenSet(items) => {
                let mut s = SeqDeserializer::new(items.into_iter());
                let out = v.visit_seq(&mut s)?;
                s.end()?;
                Ok(out)
            }
            Py::Dict(kv) => {
                let mut m = MapDeserializer::new(kv.into_iter());
                let out = v.visit_map(&mut m)?;
                m.end()?;
                Ok(out)
            }
            Py::Slice(_) => Err(de::Error::custom("a slice is not a value")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        match self {
            Py::None => v.visit_none(),
            other => v.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, ValueError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Py::Str(name) => v.visit_enum(name.into_deserializer()),
            Py::Dict(mut kv) if kv.len() == 1 => {
                let (k, val) = kv.pop().expect("1");
                v.visit_enum(Variant(k, val))
            }
            other => Err(de::Error::invalid_type(
                other.unexpected(),
                &"a variant name or {name: value}",
            )),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        match self {
            Py::None => v.visit_unit(),
            other => Err(de::Error::invalid_type(other.unexpected(), &"None")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct Variant(Py, Py);

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = ValueError;
    type Variant = Py;
    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Py), ValueError> {
        Ok((seed.deserialize(self.0)?, self.1))
    }
}

impl<'de> de::VariantAccess<'de> for Py {
    type Error = ValueError;
    fn unit_variant(self) -> Result<(), ValueError> {
        Ok(())
    }
    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ValueError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_any(self, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_any(self, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum E {
        A,
        B(i32),
        C { x: String },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct S {
        n: u64,
        f: f64,
        name: String,
        tags: Vec<String>,
        pair: (i8, bool),
        maybe: Option<i64>,
        e: E,
        map: BTreeMap<String, u32>,
    }

    fn round<T: Serialize + de::DeserializeOwned>(v: &T) -> T {
        let p = to_py(v).unwrap();
        // Through the pickle codec too: what travels.
        let bytes = super::super::pickle::fragment(&p);
        let back = super::super::pickle::decode_fragments(&bytes, 1).unwrap();
        from_py(back.into_iter().next().unwrap()).unwrap()
    }

    #[test]
    fn python_shapes() {
        assert_eq!(
            to_py(&(1u8, "a")).unwrap(),
            Py::Tuple(vec![Py::Int(1), Py::Str("a".into())])
        );
        assert_eq!(to_py(&vec![1i32]).unwrap(), Py::List(vec![Py::Int(1)]));
        assert_eq!(to_py(&None::<u8>).unwrap(), Py::None);
        assert_eq!(to_py(&E::A).unwrap(), Py::Str("A".into()));
        assert!(from_py::<u8>(Py::Int(300)).is_err());
        assert!(from_py::<String>(Py::Int(3)).is_err());
        assert_eq!(
            from_py::<Vec<u8>>(Py::Tuple(vec![Py::Int(3)])).unwrap(),
            [3]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn serde_round_trip(
            n in any::<u64>(), f in any::<f64>().prop_filter("nan", |f| !f.is_nan()),
            name in ".{0,20}", tags in proptest::collection::vec(".{0,5}", 0..4),
            pair in any::<(i8, bool)>(), maybe in any::<Option<i64>>(),
            which in 0..3u8, big in any::<i128>(), small in any::<u128>(),
        ) {
            let e = match which { 0 => E::A, 1 => E::B(n as i32), _ => E::C { x: name.clone() } };
            let map: BTreeMap<String, u32> = tags.iter().cloned().map(|t| (t, 1)).collect();
            let s = S { n, f, name, tags, pair, maybe, e, map };
            prop_assert_eq!(round(&s), s);
            prop_assert_eq!(round(&big), big);
            prop_assert_eq!(round(&(small >> 1)), small >> 1);
        }
    }
}
