//! The outer shape of a serde value: which enum variant (index and name) or struct it
//! is, and its field names in wire order. Nested values are not visited. Used to check
//! the tag and field tables of docs/PROTOCOL.md against the code.

use std::fmt::Display;

use serde::ser::{self, Impossible, Serialize};

use super::annotate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// No fields.
    Unit,
    /// One unnamed field.
    Newtype,
    /// Named fields, in wire order.
    Named(Vec<&'static str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Variant {
        index: u32,
        name: &'static str,
        fields: Fields,
    },
    Struct {
        name: &'static str,
        fields: Vec<&'static str>,
    },
    Other,
}

pub fn shape<T: Serialize + ?Sized>(value: &T) -> Shape {
    value.serialize(Recorder).unwrap()
}

struct Recorder;

/// Collects field names.
pub struct Collect {
    shape: Shape,
}

fn other<T>() -> Result<T, Error> {
    Err(ser::Error::custom("not an enum or struct"))
}

impl ser::Serializer for Recorder {
    type Ok = Shape;
    type Error = Error;
    type SerializeSeq = Impossible<Shape, Error>;
    type SerializeTuple = Impossible<Shape, Error>;
    type SerializeTupleStruct = Impossible<Shape, Error>;
    type SerializeTupleVariant = Impossible<Shape, Error>;
    type SerializeMap = Impossible<Shape, Error>;
    type SerializeStruct = Collect;
    type SerializeStructVariant = Collect;

    fn serialize_bool(self, _: bool) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_i8(self, _: i8) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_i16(self, _: i16) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_i32(self, _: i32) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_i64(self, _: i64) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_u8(self, _: u8) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_u16(self, _: u16) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_u32(self, _: u32) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_u64(self, _: u64) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_f32(self, _: f32) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_f64(self, _: f64) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_char(self, _: char) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_str(self, _: &str) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_none(self) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_unit(self) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
    ) -> Result<Shape, Error> {
        Ok(Shape::Variant {
            index,
            name,
            fields: Fields::Unit,
        })
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Shape, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        _: &T,
    ) -> Result<Shape, Error> {
        Ok(Shape::Variant {
            index,
            name,
            fields: Fields::Newtype,
        })
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        other()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        other()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        other()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        other()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        other()
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Collect, Error> {
        Ok(Collect {
            shape: Shape::Struct {
                name,
                fields: Vec::new(),
            },
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        _: usize,
    ) -> Result<Collect, Error> {
        Ok(Collect {
            shape: Shape::Variant {
                index,
                name,
                fields: Fields::Named(Vec::new()),
            },
        })
    }
}

impl Collect {
    fn push(&mut self, key: &'static str) {
        match &mut self.shape {
            Shape::Struct { fields, .. }
            | Shape::Variant {
                fields: Fields::Named(fields),
                ..
            } => fields.push(key),
            _ => {}
        }
    }
}

impl ser::SerializeStruct for Collect {
    type Ok = Shape;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        self.push(key);
        Ok(())
    }
    fn end(self) -> Result<Shape, Error> {
        Ok(self.shape)
    }
}

impl ser::SerializeStructVariant for Collect {
    type Ok = Shape;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        self.push(key);
        Ok(())
    }
    fn end(self) -> Result<Shape, Error> {
        Ok(self.shape)
    }
}

/// `Shape::Other` has no meaningful display; the rest print like a doc table row.
impl Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fields::Unit => f.write_str("—"),
            Fields::Newtype => f.write_str("(…)"),
            Fields::Named(names) => {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}
