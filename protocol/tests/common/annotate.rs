//! An annotating serializer: walks a value through serde and writes, for every field,
//! the bytes postcard would produce and a label. It re-implements the encoding rules
//! exactly as docs/PROTOCOL.md states them (varints, zigzag, tags, lengths, options,
//! raw arrays), so a test comparing its output with postcard's checks those rules, and
//! the documented vectors are rendered from it.

use std::fmt::{self, Display, Write as _};

use serde::ser::{self, Serialize};

/// One annotated run of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub bytes: Vec<u8>,
    pub depth: usize,
    pub text: String,
}

/// Annotates `value`; the concatenated bytes are its postcard encoding.
pub fn annotate<T: Serialize + ?Sized>(value: &T) -> Vec<Line> {
    let mut ann = Annotator::default();
    value.serialize(&mut ann).unwrap();
    ann.lines
}

/// The bytes of `lines`, concatenated.
pub fn bytes(lines: &[Line]) -> Vec<u8> {
    lines.iter().flat_map(|l| l.bytes.iter().copied()).collect()
}

/// Bytes per line in rendered hex.
pub const PER_LINE: usize = 8;
/// Width of the hex column of an annotated line.
const HEX_WIDTH: usize = PER_LINE * 3 - 1;

/// `de ad be ef`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        write!(s, "{b:02x}").unwrap();
    }
    s
}

/// One rendered line: hex column, then `# comment` indented by `depth`.
pub fn render_line(bytes: &[u8], depth: usize, text: &str) -> String {
    let h = hex(bytes);
    if text.is_empty() {
        return h;
    }
    format!("{h:<HEX_WIDTH$}  # {}{text}", "  ".repeat(depth))
}

/// Renders annotated lines, splitting long byte runs over several lines.
pub fn render(lines: &[Line], base_depth: usize) -> String {
    let mut out = String::new();
    for line in lines {
        let depth = base_depth + line.depth;
        if line.bytes.is_empty() {
            writeln!(out, "{}", render_line(&[], depth, &line.text)).unwrap();
            continue;
        }
        for (i, chunk) in line.bytes.chunks(PER_LINE).enumerate() {
            let text = if i == 0 { line.text.as_str() } else { "" };
            writeln!(out, "{}", render_line(chunk, depth, text).trim_end()).unwrap();
        }
    }
    out
}

/// LEB128, as postcard writes every unsigned integer wider than a byte.
pub fn varint(mut v: u128) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

/// Zigzag: 0, -1, 1, -2, … → 0, 1, 2, 3, …
pub fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}
impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

#[derive(Default)]
struct Annotator {
    lines: Vec<Line>,
    depth: usize,
    /// Name of the field (or `[i]` element) the next value belongs to.
    name: Option<String>,
}

impl Annotator {
    fn label(&mut self, what: impl Display) -> String {
        match self.name.take() {
            Some(n) => format!("{n}: {what}"),
            None => what.to_string(),
        }
    }

    fn leaf(&mut self, bytes: Vec<u8>, what: impl Display) {
        let text = self.label(what);
        self.lines.push(Line {
            bytes,
            depth: self.depth,
            text,
        });
    }

    /// A line that introduces nested content (a tag, a length, `Some`).
    fn open(&mut self, bytes: Vec<u8>, what: impl Display) {
        self.leaf(bytes, what);
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth -= 1;
    }

    fn tag(&mut self, index: u32, variant: &str) {
        self.open(varint(index.into()), format!("{variant} (tag {index})"));
    }

    fn uint(&mut self, v: u64) -> Result<(), Error> {
        self.leaf(varint(v.into()), v);
        Ok(())
    }

    fn sint(&mut self, v: i64) -> Result<(), Error> {
        self.leaf(varint(zigzag(v.into())), format!("{v} (zigzag)"));
        Ok(())
    }
}

/// State of a compound value being annotated.
struct Compound<'a> {
    ann: &'a mut Annotator,
    /// Whether `end` must close a nesting level.
    opened: bool,
    /// Next element number (sequences).
    index: usize,
    /// For raw byte arrays (tuples): where they start and their label.
    raw: Option<(usize, String)>,
}

impl<'a> Compound<'a> {
    fn new(ann: &'a mut Annotator, opened: bool) -> Self {
        Self {
            ann,
            opened,
            index: 0,
            raw: None,
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: String, value: &T) -> Result<(), Error> {
        self.ann.name = Some(name);
        value.serialize(&mut *self.ann)
    }

    fn end(self) -> Result<(), Error> {
        if let Some((start, label)) = self.raw {
            // A fixed array of bytes: one line, no length prefix.
            let merged: Vec<u8> = self
                .ann
                .lines
                .drain(start..)
                .flat_map(|l| l.bytes)
                .collect();
            self.ann.lines.push(Line {
                bytes: merged,
                depth: self.ann.depth,
                text: label,
            });
        }
        if self.opened {
            self.ann.close();
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Annotator {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.leaf(vec![u8::from(v)], v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.leaf(v.to_le_bytes().to_vec(), v);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.sint(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.sint(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.sint(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.leaf(vec![v], v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.uint(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.uint(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.uint(v)
    }
    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        Err(ser::Error::custom("no floating point on the wire"))
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        Err(ser::Error::custom("no floating point on the wire"))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        let mut bytes = varint(v.len() as u128);
        bytes.extend_from_slice(v.as_bytes());
        self.leaf(bytes, format!("{v:?} (length {}, UTF-8)", v.len()));
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut bytes = varint(v.len() as u128);
        bytes.extend_from_slice(v);
        self.leaf(bytes, format!("{} bytes (length-prefixed)", v.len()));
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.leaf(vec![0], "None");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.open(vec![1], "Some");
        value.serialize(&mut *self)?;
        self.close();
        Ok(())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        idx: u32,
        var: &'static str,
    ) -> Result<(), Error> {
        self.leaf(varint(idx.into()), format!("{var} (tag {idx})"));
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        idx: u32,
        var: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.tag(idx, var);
        value.serialize(&mut *self)?;
        self.close();
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>, Error> {
        let len = len.ok_or_else(|| ser::Error::custom("sequence without a length"))?;
        self.open(varint(len as u128), format!("{len} item(s) (length)"));
        Ok(Compound::new(self, true))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        let label = self.label(format!("{len} raw bytes (fixed array, no length)"));
        let start = self.lines.len();
        let mut c = Compound::new(self, false);
        c.raw = Some((start, label));
        Ok(c)
    }
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        Err(ser::Error::custom(format!(
            "tuple struct {name}({len}) is not used on the wire"
        )))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        idx: u32,
        var: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        self.tag(idx, var);
        Ok(Compound::new(self, true))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(ser::Error::custom("maps are not used on the wire"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Error> {
        // A named struct field gets a heading line; anonymous content (inside a tag or
        // `Some`) is already nested.
        let opened = match self.name.take() {
            Some(name) => {
                self.open(Vec::new(), format!("{name}:"));
                true
            }
            None => false,
        };
        Ok(Compound::new(self, opened))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        idx: u32,
        var: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        self.tag(idx, var);
        Ok(Compound::new(self, true))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let name = format!("[{}]", self.index);
        self.index += 1;
        self.field(name, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.ann)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.ann)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.ann)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key.to_string(), value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key.to_string(), value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}
