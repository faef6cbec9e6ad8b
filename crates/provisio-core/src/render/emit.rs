//! A YAML emitter for the shapes provisio renders (block maps, block sequences, strings,
//! integers, booleans), writing the same bytes as serde-saphyr's default serializer, only
//! faster: most of a cold run's CPU went to serde-saphyr's per-scalar quoting checks and its
//! per-key allocations. It never decides a quoting question it is not sure of: a string that
//! is not plainly safe (an ASCII letter first, then only letters, digits and `._/-`, at most
//! 80 bytes, not a word YAML reads as a bool, null or number) is emitted by serde-saphyr itself
//! (in key or value position, as a one-entry document) and its bytes are copied. A
//! multi-line ASCII string in a mapping value is written as the literal block scalar
//! serde-saphyr writes (`|`, `|-`, `|+`). Anything else — another block scalar (in a
//! sequence, with tabs, non-ASCII text or a first line starting with a space), a float, a
//! null, an enum with data, a sequence in a sequence, a top-level scalar — makes
//! [`to_yaml`] return `None`, and the caller serializes the whole object with serde-saphyr.
//! Tests compare both emitters on adversarial scalars and random trees.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// `obj` as serde-saphyr's `to_string` writes it, or `None` when `obj` has a shape this
/// emitter leaves to serde-saphyr.
pub fn to_yaml<T: Serialize + ?Sized>(obj: &T) -> Option<String> {
    let mut out = String::with_capacity(1024);
    obj.serialize(Emitter {
        out: &mut out,
        slot: Slot::Top,
    })
    .ok()?;
    Some(out)
}

/// Appends `obj` to `out` as serde-saphyr's `to_string` writes it and returns `true`, or
/// leaves `out` as it was and returns `false` when `obj` has a shape this emitter leaves to
/// serde-saphyr.
pub fn append_yaml<T: Serialize + ?Sized>(out: &mut String, obj: &T) -> bool {
    let start = out.len();
    let written = obj
        .serialize(Emitter {
            out,
            slot: Slot::Top,
        })
        .is_ok();
    if !written {
        out.truncate(start);
    }
    written
}

/// The shape is not one this emitter writes (never surfaced: the caller falls back).
#[derive(Debug)]
pub struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shape left to serde-saphyr")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Unsupported
    }
}

type Result<T = ()> = std::result::Result<T, Unsupported>;

/// Where the next node goes.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The document itself.
    Top,
    /// After `key:` written at column `indent` (nothing after the colon yet).
    Value { indent: usize },
    /// After `- ` whose dash is at column `indent`.
    Item { indent: usize },
}

fn spaces(out: &mut String, n: usize) {
    const SPACES: &str = "                                                                ";
    let mut n = n;
    while n > SPACES.len() {
        out.push_str(SPACES);
        n -= SPACES.len();
    }
    out.push_str(&SPACES[..n]);
}

/// `v` in decimal, as `Display` writes it.
fn push_decimal(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// The bytes [`plainly_safe`] accepts after the first: ASCII letters, digits and `._/-`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-');
        c += 1;
    }
    t
};

/// Whether serde-saphyr writes `s` plain in key and in value position: a conservative subset
/// of its rules (an ASCII letter first rules out numbers, indicators, document markers and
/// leading spaces; no space, `:` or `#` rules out comments and mapping indicators; 80 bytes
/// at most rules out folding; the words YAML 1.1 or 1.2 resolve to bools, nulls and floats are
/// left out whatever their case).
fn plainly_safe(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 80 || !b[0].is_ascii_alphabetic() {
        return false;
    }
    if !b.iter().all(|&c| PLAIN[usize::from(c)]) {
        return false;
    }
    const WORDS: [&str; 11] = [
        "null", "true", "false", "nan", "inf", "y", "yes", "n", "no", "on", "off",
    ];
    b.len() > 5 || !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// `s` in key position (serde-saphyr quotes keys by stricter rules than values).
fn key_scalar(out: &mut String, s: &str) -> Result {
    if plainly_safe(s) {
        out.push_str(s);
        return Ok(());
    }
    spelled(Position::Key, s, out)
}

/// Where a string that is not plainly safe is written.
#[derive(Debug, Clone, Copy)]
enum Position {
    Value = 0,
    Key = 1,
}

/// serde-saphyr's spelling of `s` in value position, or `None` when it writes a block scalar.
fn value_spelling(s: &str) -> Option<String> {
    let doc = serde_saphyr::to_string(&s).ok()?;
    let line = doc.strip_suffix('\n')?;
    // A block scalar (`|`, `>`) depends on where it is written: left to serde-saphyr.
    if line.contains('\n') || line.starts_with(['|', '>']) || line.is_empty() {
        return None;
    }
    Some(line.to_owned())
}

/// serde-saphyr's spelling of `s` in key position, or `None` when it is not one line.
fn key_spelling(s: &str) -> Option<String> {
    let doc = serde_saphyr::to_string(&std::collections::BTreeMap::from([(s, 0u8)])).ok()?;
    let key = doc.strip_suffix(": 0\n")?;
    if key.contains('\n') || key.is_empty() || key.starts_with(['?', '|', '>']) {
        return None;
    }
    Some(key.to_owned())
}

/// Strings longer than this are not remembered by [`spelled`].
const SPELLED_LEN_MAX: usize = 256;
/// [`spelled`]'s maps are emptied when they reach this many entries.
const SPELLED_MAX: usize = 4096;

type Spellings = HashMap<String, Option<String>>;

thread_local! {
    /// serde-saphyr's spellings already asked for on this thread, by position: the same few
    /// strings (`"-1"`, `--force`, quantities, image references) recur in every tenant's
    /// objects, and each answer costs a whole serde-saphyr serializer. A pure function
    /// memoized, so the bytes do not depend on what the map holds; bounded by entry count and
    /// string length.
    static SPELLED: RefCell<[Spellings; 2]> = RefCell::new([HashMap::new(), HashMap::new()]);
}

/// Writes serde-saphyr's spelling of `s` at `position`, remembered per thread (short strings).
fn spelled(position: Position, s: &str, out: &mut String) -> Result {
    let spell = |s: &str| match position {
        Position::Value => value_spelling(s),
        Position::Key => key_spelling(s),
    };
    if s.len() > SPELLED_LEN_MAX {
        out.push_str(&spell(s).ok_or(Unsupported)?);
        return Ok(());
    }
    SPELLED.with_borrow_mut(|maps| {
        let map = &mut maps[position as usize];
        if let Some(known) = map.get(s) {
            out.push_str(known.as_deref().ok_or(Unsupported)?);
            return Ok(());
        }
        let spelling = spell(s);
        if map.len() >= SPELLED_MAX {
            map.clear();
        }
        let known = map.entry(s.to_owned()).or_insert(spelling);
        out.push_str(known.as_deref().ok_or(Unsupported)?);
        Ok(())
    })
}

struct Emitter<'o> {
    out: &'o mut String,
    slot: Slot,
}

impl<'o> Emitter<'o> {
    /// Writes what precedes a scalar in this slot, then `write`, then the line end.
    fn scalar(self, write: impl FnOnce(&mut String) -> Result) -> Result {
        match self.slot {
            Slot::Top => return Err(Unsupported),
            Slot::Value { .. } => self.out.push(' '),
            Slot::Item { .. } => {}
        }
        write(self.out)?;
        self.out.push('\n');
        Ok(())
    }

    /// A multi-line string as serde-saphyr writes it in a mapping value: a literal block
    /// scalar (`|`, `|-` without a final newline, `|+` with more than one) whose lines are
    /// indented one step past the key, empty lines left empty. Only for ASCII text without
    /// tabs or carriage returns whose first non-empty line does not start with a space (which
    /// would need an indentation indicator); anything else is left to serde-saphyr.
    fn literal(self, v: &str) -> Result {
        let Slot::Value { indent } = self.slot else {
            return Err(Unsupported);
        };
        let content = v.trim_end_matches('\n');
        let trailing = v.len() - content.len();
        let printable = |c: &u8| *c == b'\n' || (0x20..=0x7e).contains(c);
        let first = content.split('\n').find(|l| !l.is_empty()).unwrap_or("");
        if content.is_empty() || !v.as_bytes().iter().all(printable) || first.starts_with(' ') {
            return Err(Unsupported);
        }
        self.out.push_str(match trailing {
            0 => " |-\n",
            1 => " |\n",
            _ => " |+\n",
        });
        for line in content.split('\n') {
            if !line.is_empty() {
                spaces(self.out, indent + 2);
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
        for _ in 1..trailing {
            self.out.push('\n');
        }
        Ok(())
    }

    fn map(self) -> Result<MapEmitter<'o>> {
        let indent = match self.slot {
            Slot::Top => 0,
            Slot::Value { indent } | Slot::Item { indent } => indent + 2,
        };
        Ok(MapEmitter {
            out: self.out,
            slot: self.slot,
            indent,
            first: true,
        })
    }

    fn seq(self) -> Result<SeqEmitter<'o>> {
        match self.slot {
            Slot::Value { indent } => Ok(SeqEmitter {
                out: self.out,
                indent,
                first: true,
            }),
            Slot::Top | Slot::Item { .. } => Err(Unsupported),
        }
    }
}

struct MapEmitter<'o> {
    out: &'o mut String,
    slot: Slot,
    /// Column of this map's keys.
    indent: usize,
    first: bool,
}

impl MapEmitter<'_> {
    fn key(&mut self, key: &str) -> Result {
        match (self.first, self.slot) {
            // The first key of a sequence item follows its `- `.
            (true, Slot::Item { .. }) => {}
            (true, Slot::Value { .. }) => {
                self.out.push('\n');
                spaces(self.out, self.indent);
            }
            _ => spaces(self.out, self.indent),
        }
        self.first = false;
        key_scalar(self.out, key)?;
        self.out.push(':');
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(Emitter {
            out: self.out,
            slot: Slot::Value {
                indent: self.indent,
            },
        })
    }

    fn end(self) -> Result {
        if self.first {
            match self.slot {
                Slot::Top => return Err(Unsupported),
                Slot::Value { .. } => self.out.push_str(" {}\n"),
                Slot::Item { .. } => self.out.push_str("{}\n"),
            }
        }
        Ok(())
    }
}

struct SeqEmitter<'o> {
    out: &'o mut String,
    /// Column of this sequence's dashes (that of the key it is the value of).
    indent: usize,
    first: bool,
}

impl SeqEmitter<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        if self.first {
            self.out.push('\n');
        }
        self.first = false;
        spaces(self.out, self.indent);
        self.out.push_str("- ");
        value.serialize(Emitter {
            out: self.out,
            slot: Slot::Item {
                indent: self.indent,
            },
        })
    }

    fn end(self) -> Result {
        if self.first {
            self.out.push_str(" []\n");
        }
        Ok(())
    }
}

/// Writes a map key: strings only, written where they are borrowed (no copy per key).
struct KeyWriter<'m, 'o> {
    map: &'m mut MapEmitter<'o>,
}

macro_rules! unsupported {
    ($($name:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<$ret> { Err(Unsupported) })*
    };
}

impl ser::Serializer for KeyWriter<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Impossible<(), Unsupported>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result {
        self.map.key(v)
    }
    unsupported! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result {
        Err(Unsupported)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(Unsupported)
    }
}

impl<'o> ser::Serializer for Emitter<'o> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = SeqEmitter<'o>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = MapEmitter<'o>;
    type SerializeStruct = MapEmitter<'o>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result {
        self.scalar(|o| {
            o.push_str(if v { "true" } else { "false" });
            Ok(())
        })
    }
    fn serialize_i8(self, v: i8) -> Result {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result {
        self.scalar(|o| {
            if v < 0 {
                o.push('-');
            }
            push_decimal(o, v.unsigned_abs());
            Ok(())
        })
    }
    fn serialize_u8(self, v: u8) -> Result {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result {
        self.scalar(|o| {
            push_decimal(o, v);
            Ok(())
        })
    }
    fn serialize_f32(self, _: f32) -> Result {
        Err(Unsupported)
    }
    fn serialize_f64(self, _: f64) -> Result {
        Err(Unsupported)
    }
    fn serialize_char(self, _: char) -> Result {
        Err(Unsupported)
    }
    fn serialize_str(self, v: &str) -> Result {
        // A plainly safe string has no line break: the common case scans `v` once.
        if plainly_safe(v) {
            return self.scalar(|o| {
                o.push_str(v);
                Ok(())
            });
        }
        if v.contains('\n') {
            return self.literal(v);
        }
        self.scalar(|o| spelled(Position::Value, v, o))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Result {
        Err(Unsupported)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        Err(Unsupported)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Err(Unsupported)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(Unsupported)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<SeqEmitter<'o>> {
        self.seq()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(Unsupported)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(Unsupported)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(Unsupported)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapEmitter<'o>> {
        self.map()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapEmitter<'o>> {
        self.map()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(Unsupported)
    }
}

impl ser::SerializeMap for MapEmitter<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        key.serialize(KeyWriter { map: self })
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.value(value)
    }
    fn end(self) -> Result {
        MapEmitter::end(self)
    }
}

impl ser::SerializeStruct for MapEmitter<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.key(key)?;
        self.value(value)
    }
    fn end(self) -> Result {
        MapEmitter::end(self)
    }
}

impl ser::SerializeSeq for SeqEmitter<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.item(value)
    }
    fn end(self) -> Result {
        SeqEmitter::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    use super::to_yaml;

    /// Whatever this emitter writes, serde-saphyr writes too.
    fn same<T: Serialize + std::fmt::Debug>(obj: &T) -> bool {
        let theirs = serde_saphyr::to_string(obj).unwrap();
        match to_yaml(obj) {
            Some(ours) => {
                assert_eq!(ours, theirs, "{obj:?}");
                true
            }
            None => false,
        }
    }

    const ADVERSARIAL: &[&str] = &[
        "yes",
        "Yes",
        "YES",
        "no",
        "NO",
        "y",
        "Y",
        "n",
        "on",
        "ON",
        "off",
        "Off",
        "true",
        "True",
        "FALSE",
        "null",
        "Null",
        "NULL",
        "~",
        "nan",
        "NaN",
        ".nan",
        "inf",
        "-inf",
        ".inf",
        "+.inf",
        "0x1F",
        "0o17",
        "0b101",
        "1e3",
        "1E3",
        "1.5",
        "-1",
        "+1",
        "01",
        "1_000",
        "12:30",
        "1:20:30",
        "2025-02-01",
        "2025-02-01T00:00:00Z",
        "2025-2-1 1:2:3",
        ": ",
        "a: b",
        "a:",
        ":a",
        "a:b",
        "#",
        "a #b",
        "a#b",
        "#a",
        " a",
        "a ",
        " ",
        "",
        "-",
        "- a",
        "-a",
        "?",
        "? a",
        "?a",
        "---",
        "--- a",
        "...",
        "... a",
        "<<",
        "=",
        "a\nb",
        "a\n",
        "\n",
        "a\tb",
        "\t",
        "\r",
        "café",
        "Ünïcödé",
        "日本",
        "emoji 🎉",
        "\u{feff}a",
        "a\u{2028}b",
        "a\u{85}b",
        "\u{0}",
        "\u{7f}",
        "'",
        "\"",
        "a'b",
        "a\"b",
        "\\",
        "a\\b",
        "@a",
        "`a",
        "%a",
        "!a",
        "&a",
        "*a",
        "|",
        ">",
        "[a]",
        "{a}",
        "a,b",
        ",a",
        "a]",
        "a}",
        "250m",
        "512Mi",
        "v1.2.3",
        "e-commerce",
        "a/b.c_d-e",
        "registry.collectverything.com/ecommerce/addresses-service:v1.2.3",
        "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij",
        "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijk",
        "a b c d e f g h i j a b c d e f g h i j a b c d e f g h i j a b c d e f g h i j a b c d",
        "0",
        "-0",
        "0.",
        ".5",
        "._",
        "_",
        "__",
        "1__2",
        "+",
        "+a",
        ".a",
        "a.",
        "Infinity",
        "nil",
        "a\nb\n",
        "a\nb\n\n",
        "a\n\nb",
        "a\n\n\nb\n\n\n",
        "#!/bin/sh\nset -eu\nmysql -e 'CREATE DATABASE x;'\n",
        "a: b\n  c: d\n",
        " a\nb\n",
        "\n a\nb\n",
        "a\n b\n",
        "\na\n",
        "\ta\nb\n",
        "a\r\nb\n",
        "- a\n- b\n",
        "{\"a\": 1}\n",
        "café\nb\n",
    ];

    #[test]
    fn adversarial_scalars_are_written_as_serde_saphyr_writes_them() {
        let mut written = 0;
        for s in ADVERSARIAL {
            for obj in [
                BTreeMap::from([("key".to_owned(), s.to_string())]),
                BTreeMap::from([(s.to_string(), "value".to_owned())]),
            ] {
                written += usize::from(same(&obj));
                // And the same value reads back.
                if let Some(ours) = to_yaml(&obj) {
                    let back: BTreeMap<String, String> = serde_saphyr::from_str(&ours).unwrap();
                    assert_eq!(back, obj, "{ours}");
                }
            }
            written += usize::from(same(&BTreeMap::from([("k", vec![*s, "x"])])));
            written += usize::from(same(&BTreeMap::from([(
                "k",
                vec![BTreeMap::from([(*s, *s), ("b", "c")])],
            )])));
        }
        // Most of them are written here, not left to the fallback.
        assert!(written > ADVERSARIAL.len() * 3, "{written}");
    }

    #[derive(Debug, Clone, Serialize)]
    #[serde(untagged)]
    enum Node {
        Str(String),
        Int(i64),
        Bool(bool),
        Seq(Vec<Node>),
        Map(BTreeMap<String, Node>),
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(ADVERSARIAL).prop_map(str::to_owned),
            "[a-z #:\t-]{0,6}(\n[ a-z#:\t-]{0,6}){0,3}\n{0,3}",
            "[a-zA-Z0-9 ._/:#-]{0,12}",
            any::<String>(),
        ]
    }

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            scalar().prop_map(Node::Str),
            any::<i64>().prop_map(Node::Int),
            any::<bool>().prop_map(Node::Bool),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Node::Seq),
                prop::collection::btree_map(scalar(), inner, 0..4).prop_map(Node::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_documents_are_written_as_serde_saphyr_writes_them(
            doc in prop::collection::btree_map(scalar(), node(), 0..5)
        ) {
            same(&doc);
        }
    }

    /// A spelling asked for again comes from the thread's memory: the same bytes, in both
    /// positions, before and after the memory is emptied, and for strings too long to keep.
    #[test]
    fn remembered_spellings_are_serde_saphyrs() {
        let long = format!("{}: x", "a".repeat(super::SPELLED_LEN_MAX));
        let strings = [
            "-1",
            "--force",
            "250m",
            "a: b",
            "yes",
            "a\tb",
            long.as_str(),
        ];
        for round in 0..3 {
            for s in strings {
                assert!(same(&BTreeMap::from([("k", s)])), "{s:?} round {round}");
                assert!(same(&BTreeMap::from([(s, "v")])), "{s:?} round {round}");
            }
        }
        // Past the bound the memory starts again.
        for i in 0..=super::SPELLED_MAX {
            let s = format!("{i}");
            assert!(same(&BTreeMap::from([(s.as_str(), s.as_str())])), "{s}");
        }
        for s in strings {
            assert!(same(&BTreeMap::from([(s, s)])), "{s:?}");
        }
        // A shape left to serde-saphyr stays left to it when asked again.
        for _ in 0..2 {
            assert_eq!(to_yaml(&BTreeMap::from([("k", vec!["a\nb"])])), None);
        }
    }

    /// `append_yaml` appends what `to_yaml` returns, and leaves the buffer alone otherwise.
    #[test]
    fn append_yaml_appends_to_yaml_or_nothing() {
        let mut out = "# x\n".to_owned();
        let obj = BTreeMap::from([("k", vec!["-1", "a"])]);
        assert!(super::append_yaml(&mut out, &obj));
        assert_eq!(out, format!("# x\n{}", to_yaml(&obj).unwrap()));
        let before = out.clone();
        assert!(!super::append_yaml(
            &mut out,
            &BTreeMap::from([("k", vec![1.5f64])])
        ));
        assert_eq!(out, before);
    }

    #[test]
    fn shapes_left_to_serde_saphyr() {
        assert_eq!(to_yaml(&1.5f64), None);
        assert_eq!(to_yaml("top"), None);
        assert_eq!(to_yaml(&BTreeMap::from([("k", None::<u8>)])), None);
        assert_eq!(to_yaml(&BTreeMap::from([("k", vec![vec![1]])])), None);
        assert_eq!(to_yaml(&BTreeMap::from([("k", vec!["a\nb"])])), None);
        assert!(same(&BTreeMap::from([("k", "a\nb")])));
        assert!(same(&BTreeMap::from([(
            "k",
            BTreeMap::from([("l", vec![BTreeMap::from([("a", "x\n\n  y\n"), ("b", "c")])])]),
        )])));
        assert!(same(&BTreeMap::from([(
            "k",
            BTreeMap::<String, u8>::new()
        )])));
        assert!(same(&BTreeMap::from([("k", Vec::<u8>::new())])));
        assert!(same(&BTreeMap::from([(
            "k",
            vec![BTreeMap::<String, u8>::new()]
        )])));
    }

    /// Strings made of the tokens YAML treats specially (indicators, line breaks, tabs, BOM,
    /// NEL/LS, quotes, document markers, words that resolve to bools, nulls, dates and
    /// sexagesimals), so that the random documents meet them in every position and
    /// combination rather than one at a time.
    fn tokens() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "b",
                " ",
                "  ",
                "\n",
                "\n\n",
                ":",
                "#",
                "-",
                "?",
                "\t",
                "\r",
                "é",
                "\u{85}",
                "\u{2028}",
                "\u{feff}",
                "\"",
                "'",
                "|",
                ">",
                "0",
                "1",
                ".",
                "_",
                "y",
                "n",
                "o",
                "e",
                "x",
                "+",
                "~",
                "!",
                "&",
                "*",
                "%",
                "@",
                "`",
                "[",
                "{",
                ",",
                "=",
                "<",
                "\\",
                "---",
                "...",
                "Yes",
                "ON",
                "null",
                "2001-12-14",
                "1:20",
            ]),
            0..14,
        )
        .prop_map(|v| v.concat())
    }

    /// What this emitter writes is serde-saphyr's bytes and reads back as `obj`.
    fn same_and_read_back<T>(obj: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if same(obj) {
            let ours = to_yaml(obj).unwrap();
            let back: T = serde_saphyr::from_str(&ours).unwrap();
            assert_eq!(&back, obj, "{ours}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Token strings as keys and values: in a map, in a map in a sequence item, in a map
        /// two levels below a sequence item, and as sequence items.
        #[test]
        fn token_strings_are_written_as_serde_saphyr_writes_them(
            k in tokens(), v in tokens(), k2 in tokens(), v2 in tokens()
        ) {
            same_and_read_back(&BTreeMap::from([(k.clone(), v.clone()), (k2.clone(), v2.clone())]));
            same_and_read_back(&BTreeMap::from([(
                k.clone(),
                vec![BTreeMap::from([(k2.clone(), v.clone()), (v2.clone(), k.clone())])],
            )]));
            same_and_read_back(&BTreeMap::from([(
                k.clone(),
                BTreeMap::from([(k2.clone(), vec![BTreeMap::from([(v2.clone(), v.clone())])])]),
            )]));
            same_and_read_back(&BTreeMap::from([(k, vec![v, v2])]));
        }

        /// Multi-line strings of spaces, letters and indicators (lines of spaces only, leading
        /// and trailing spaces, blank lines, any number of final newlines): the literal block
        /// path at three depths.
        #[test]
        fn multi_line_strings_are_written_as_serde_saphyr_writes_them(
            v in "[ a\n#:-]{0,30}", k in "[a-z]{1,3}"
        ) {
            same_and_read_back(&BTreeMap::from([(k.clone(), v.clone())]));
            same_and_read_back(&BTreeMap::from([(
                k.clone(),
                vec![BTreeMap::from([(k.clone(), v.clone()), ("zz".to_owned(), v.clone())])],
            )]));
            same_and_read_back(&BTreeMap::from([(
                k.clone(),
                BTreeMap::from([(
                    k.clone(),
                    vec![BTreeMap::from([("q".to_owned(), BTreeMap::from([(k, v)]))])],
                )]),
            )]));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The k8s-openapi types provisio renders, with registry strings (display names,
        /// domains, annotations, ConfigMap data) made of YAML's special tokens: `None` fields
        /// skipped, `BTreeMap`s, a `Quantity` and an `IntOrString`, a container list.
        #[test]
        fn k8s_objects_with_registry_strings_are_written_as_serde_saphyr_writes_them(
            name in tokens(), domain in tokens(), note in tokens(), data in tokens(),
            port in any::<i32>(),
        ) {
            use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
            use k8s_openapi::api::core::v1::{
                ConfigMap, Container, ContainerPort, PodSpec, PodTemplateSpec, ResourceRequirements,
            };
            use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
            use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
            let meta = ObjectMeta {
                name: Some("t".to_owned()),
                annotations: Some(BTreeMap::from([
                    ("provisio.io/display-name".to_owned(), name.clone()),
                    (note.clone(), domain.clone()),
                ])),
                ..ObjectMeta::default()
            };
            let cm = ConfigMap {
                metadata: meta.clone(),
                data: Some(BTreeMap::from([
                    ("name".to_owned(), name.clone()),
                    ("domain".to_owned(), domain.clone()),
                    (data.clone(), note.clone()),
                ])),
                ..ConfigMap::default()
            };
            // Single-line values are always written here (serde-saphyr's own quoting when
            // not plainly safe), never left to the fallback.
            let single = [&name, &domain].iter().all(|s| !s.contains('\n'));
            let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
            let handled = same(&cm);
            prop_assert!(handled || !single || !plain(&note) || !plain(&data));
            let container = Container {
                name: "c".to_owned(),
                image: Some(domain.clone()),
                args: Some(vec![name.clone(), data.clone()]),
                ports: Some(vec![ContainerPort {
                    container_port: port,
                    name: Some(note.clone()),
                    ..ContainerPort::default()
                }]),
                resources: Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([("cpu".to_owned(), Quantity(data.clone()))])),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            };
            let dep = Deployment {
                metadata: meta,
                spec: Some(DeploymentSpec {
                    template: PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            containers: vec![container],
                            ..PodSpec::default()
                        }),
                    },
                    ..DeploymentSpec::default()
                }),
                ..Deployment::default()
            };
            same(&dep);
        }
    }
}
