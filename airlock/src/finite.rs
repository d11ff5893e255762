//! Refusing payloads that JSON cannot carry: a NaN or infinite float.
//!
//! `serde_json` writes a non-finite float as `null`, which no worker can
//! decode back into a number: the job would fail only when it is run, far
//! from the code that made it. [`check`] walks the payload once, with a
//! serializer that produces nothing, and reports the first non-finite float
//! with the path of the field that holds it (`ratio`, `points[2]`,
//! `prices["eur"]`), wherever it sits: in an argument, an `Option`, a `Vec`,
//! a map or a struct of the user's own.

use std::fmt;

use serde::ser::{self, Serialize};

/// Fails, naming `task` and the field, if `payload` holds a NaN or an
/// infinite float. Any other error of the payload's `Serialize` is left to
/// the real serializer, which reports it in its own words.
pub(crate) fn check<T: Serialize + ?Sized>(task: &str, payload: &T) -> serde_json::Result<()> {
    let mut checker = Checker { path: Vec::new() };
    match payload.serialize(&mut checker) {
        Err(Found::NonFinite { value, path }) => {
            let what = if value.is_nan() { "NaN" } else { "infinite" };
            let field = if path.is_empty() {
                "the payload".to_owned()
            } else {
                format!("field `{path}`")
            };
            Err(ser::Error::custom(format!(
                "cannot serialize task `{task}`: {field} is {what} ({value}), which JSON \
                 cannot carry (it would arrive as `null`, which no worker can decode as a \
                 number); check the value before enqueueing the task"
            )))
        }
        Ok(()) | Err(Found::Other) => Ok(()),
    }
}

/// Where the walk is: one entry per level of nesting.
enum Segment {
    Field(&'static str),
    Index(usize),
    Key(String),
}

struct Checker {
    path: Vec<Segment>,
}

impl Checker {
    fn path(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Field(name) if out.is_empty() => out.push_str(name),
                Segment::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
                Segment::Key(key) => out.push_str(&format!("[{key}]")),
            }
        }
        out
    }

    fn float(&self, value: f64) -> Result<(), Found> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(Found::NonFinite {
                value,
                path: self.path(),
            })
        }
    }

    /// Counts the element just checked.
    fn next_index(&mut self) {
        if let Some(Segment::Index(index)) = self.path.last_mut() {
            *index += 1;
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        value.serialize(&mut *self)?;
        self.next_index();
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Found> {
        self.path.push(Segment::Field(key));
        value.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }

    fn end(&mut self) -> Result<(), Found> {
        self.path.pop();
        Ok(())
    }
}

/// Why the walk stopped.
#[derive(Debug)]
enum Found {
    /// The first non-finite float, and where.
    NonFinite { value: f64, path: String },
    /// The payload's own `Serialize` failed: not ours to report.
    Other,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::NonFinite { value, path } => write!(f, "`{path}` is {value}"),
            Found::Other => f.write_str("the payload failed to serialize"),
        }
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Found::Other
    }
}

/// The methods that have nothing to check.
macro_rules! accept {
    ($($method:ident($($ty:ty)?)),* $(,)?) => {
        $(fn $method(self $(, _: $ty)?) -> Result<(), Found> { Ok(()) })*
    };
}

impl ser::Serializer for &mut Checker {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, value: f32) -> Result<(), Found> {
        self.float(value.into())
    }

    fn serialize_f64(self, value: f64) -> Result<(), Found> {
        self.float(value)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Found> {
        value.serialize(self)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Found> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        self.field(variant, value)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Found> {
        self.path.push(Segment::Index(0));
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Found> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Found> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Found> {
        self.path.push(Segment::Field(variant));
        self.serialize_seq(None)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, Found> {
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Found> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Found> {
        self.path.push(Segment::Field(variant));
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        self.element(value)
    }
    fn end(self) -> Result<(), Found> {
        Checker::end(self)
    }
}

impl ser::SerializeTuple for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        self.element(value)
    }
    fn end(self) -> Result<(), Found> {
        Checker::end(self)
    }
}

impl ser::SerializeTupleStruct for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        self.element(value)
    }
    fn end(self) -> Result<(), Found> {
        Checker::end(self)
    }
}

impl ser::SerializeTupleVariant for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        self.element(value)
    }
    fn end(self) -> Result<(), Found> {
        // The index, then the variant.
        self.path.pop();
        Checker::end(self)
    }
}

impl ser::SerializeMap for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Found> {
        // Keys are few and short; rendered as JSON they read as written:
        // `prices["eur"]`, `counts[3]`.
        let key = serde_json::to_string(key).unwrap_or_else(|_| "?".to_owned());
        self.path.push(Segment::Key(key));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        value.serialize(&mut **self)?;
        self.path.pop();
        Ok(())
    }
    fn end(self) -> Result<(), Found> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Found> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Checker {
    type Ok = ();
    type Error = Found;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Found> {
        Checker::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::check;

    fn message<T: Serialize>(payload: &T) -> Option<String> {
        check("measure", payload)
            .err()
            .map(|error| error.to_string())
    }

    #[derive(Serialize)]
    struct Point {
        x: f64,
        y: f32,
    }

    #[derive(Serialize)]
    enum Shape {
        Circle { radius: f64 },
        Pair(f64, f64),
        Scale(f64),
    }

    #[derive(Serialize)]
    struct Ratio(f64);

    #[derive(Serialize)]
    struct Pair(f64, f64);

    #[derive(Serialize)]
    struct Payload {
        label: String,
        ratio: f64,
        maybe: Option<f32>,
        points: Vec<Point>,
        prices: BTreeMap<String, f64>,
        tuple: (u8, f64),
        shapes: Vec<Shape>,
        ratio_newtype: Ratio,
        pair: Pair,
        last: f64,
    }

    fn finite() -> Payload {
        Payload {
            label: "a".into(),
            ratio: 0.5,
            maybe: Some(1.0),
            points: vec![Point { x: 1.0, y: 2.0 }, Point { x: 3.0, y: 4.0 }],
            prices: BTreeMap::from([("eur".to_owned(), 1.0), ("usd".to_owned(), 2.0)]),
            tuple: (1, 2.0),
            shapes: vec![
                Shape::Circle { radius: 1.0 },
                Shape::Pair(1.0, 2.0),
                Shape::Scale(3.0),
            ],
            ratio_newtype: Ratio(0.5),
            pair: Pair(1.0, 2.0),
            last: 1.0,
        }
    }

    #[test]
    fn finite_payloads_pass() {
        assert_eq!(message(&finite()), None);
        assert_eq!(message(&f64::MAX), None);
    }

    #[test]
    fn each_place_is_named() {
        type Case = (&'static str, fn(&mut Payload));
        let cases: [Case; 12] = [
            ("field `ratio_newtype` is NaN", |p| {
                p.ratio_newtype = Ratio(f64::NAN)
            }),
            ("field `pair[1]` is NaN", |p| p.pair = Pair(0.0, f64::NAN)),
            // After every kind of compound: each left the path as it found it.
            ("field `last` is NaN", |p| p.last = f64::NAN),
            ("field `ratio` is NaN", |p| p.ratio = f64::NAN),
            ("field `maybe` is infinite (inf)", |p| {
                p.maybe = Some(f32::INFINITY)
            }),
            ("field `points[1].y` is infinite (-inf)", |p| {
                p.points[1].y = f32::NEG_INFINITY
            }),
            ("field `points[0].x` is NaN", |p| p.points[0].x = f64::NAN),
            ("field `prices[\"usd\"]` is NaN", |p| {
                p.prices.insert("usd".into(), f64::NAN);
            }),
            ("field `tuple[1]` is NaN", |p| p.tuple.1 = f64::NAN),
            ("field `shapes[0].Circle.radius` is NaN", |p| {
                p.shapes[0] = Shape::Circle { radius: f64::NAN }
            }),
            ("field `shapes[1].Pair[1]` is NaN", |p| {
                p.shapes[1] = Shape::Pair(0.0, f64::NAN)
            }),
            ("field `shapes[2].Scale` is NaN", |p| {
                p.shapes[2] = Shape::Scale(f64::NAN)
            }),
        ];
        for (expected, break_it) in cases {
            let mut payload = finite();
            break_it(&mut payload);
            let message = message(&payload).expect(expected);
            assert!(
                message.starts_with(&format!("cannot serialize task `measure`: {expected}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_bare_float_is_the_payload() {
        let message = message(&f64::NAN).unwrap();
        assert!(message.contains("the payload is NaN"), "{message}");
    }

    #[test]
    fn other_serialize_errors_are_left_to_serde_json() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        assert_eq!(message(&Fails), None);
    }
}
