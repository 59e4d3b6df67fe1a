//! Lenient JSON value types for diagnostic records, read with serde in one pass.
//!
//! Real traffic sends numbers as strings (`"statusCode": "200"`), levels as numbers
//! or names, ids as `""`, `null` or `"&lt;null&gt;"`, and keys in camelCase or
//! PascalCase. These types accept every such spelling and turn a wrong *type* (an
//! object where a number belongs, text that is no number) into an error that names
//! the field, so the record is quarantined with a reason instead of stored wrong.

use serde::de::{self, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Text that is absent when the wire says `null`, `""` or `&lt;null&gt;`.
/// Numbers and booleans are kept as their text. Borrows from the input when it can.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// What a JSON string means as text (shared by the serde visitor and `fast`).
    pub(crate) fn from_cow(value: Cow<'a, str>) -> Self {
        // Only a value starting with one of these can be a spelling of "absent".
        let blank = match value.as_bytes().first() {
            None => true,
            Some(b) if b.is_ascii_whitespace() || *b == b'&' || *b == b'<' => {
                matches!(value.trim(), "" | "&lt;null&gt;" | "<null>")
            }
            Some(_) => false,
        };
        Text((!blank).then_some(value))
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::from_cow(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::from_cow(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::from_cow(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A number sent as a JSON number or as numeric text; absent for `null` and `""`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Num<T>(pub Option<T>);

/// Numbers a [`Num`] can hold.
pub trait Numeric: Copy + Sized {
    const EXPECTING: &'static str;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
    fn from_text(v: &str) -> Option<Self>;
}

impl Numeric for f64 {
    const EXPECTING: &'static str = "a number or numeric string";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        v.is_finite().then_some(v)
    }
    fn from_text(v: &str) -> Option<Self> {
        v.parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

impl Numeric for i64 {
    const EXPECTING: &'static str = "an integer or integer string";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v)
    }
    fn from_f64(v: f64) -> Option<Self> {
        (v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
    }
    fn from_text(v: &str) -> Option<Self> {
        // "1.000000" appears where integers belong; accept it when it is whole.
        v.parse::<i64>().ok().or_else(|| v.parse::<f64>().ok().and_then(Self::from_f64))
    }
}

impl<T: Numeric> Num<T> {
    /// What a JSON string means as a number (shared by the serde visitor and `fast`):
    /// absent for the spellings of nothing, `None` if it is no number of this kind.
    pub(crate) fn from_json_str(v: &str) -> Option<Num<T>> {
        let t = v.trim();
        if matches!(t, "" | "&lt;null&gt;" | "<null>" | "null") {
            return Some(Num(None));
        }
        T::from_text(t).map(|v| Num(Some(v)))
    }
}

impl<'de, T: Numeric> de::Deserialize<'de> for Num<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Numeric> Visitor<'de> for NumVisitor<T> {
            type Value = Num<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_i64(v).map(|v| Num(Some(v))).ok_or_else(|| E::custom(format!("{v} is out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                let v = i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))?;
                self.visit_i64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_f64(v)
                    .map(|v| Num(Some(v)))
                    .ok_or_else(|| E::custom(format!("expected {}, got {v}", T::EXPECTING)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Num::from_json_str(v).ok_or_else(|| E::custom(format!("expected {}, got {v:?}", T::EXPECTING)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Num(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Num(None))
            }
        }
        deserializer.deserialize_any(NumVisitor(std::marker::PhantomData))
    }
}

/// A boolean sent as `true`, `"true"`, `"True"`, `1` or `"1"` (and the false forms).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Flag(pub Option<bool>);

impl<'de> de::Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl<'de> Visitor<'de> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Flag(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match v {
                    0 | 1 => Ok(Flag(Some(v == 1))),
                    _ => Err(E::custom(format!("expected a boolean, got {v}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(v.min(2) as i64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(Flag(Some(true))),
                    "false" | "0" => Ok(Flag(Some(false))),
                    "" | "null" => Ok(Flag(None)),
                    _ => Err(E::custom(format!("expected a boolean, got {v:?}"))),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Flag(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Flag(None))
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}

/// Severity as `4`, `"4"` or `"Informational"`, kept as Azure's level name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Level(pub Option<Cow<'static, str>>);

impl Level {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// What a value read as [`Text`] means as a level (shared by the serde reader and
    /// `fast`): a number is a code, anything else a name.
    pub(crate) fn from_text(text: &Text) -> Level {
        match text.get().map(str::trim) {
            None => Level(None),
            Some(t) => match t.parse::<i64>() {
                Ok(code) => Level::from_code(code),
                Err(_) => Level(Some(Cow::Owned(t.to_owned()))),
            },
        }
    }

    fn from_code(code: i64) -> Level {
        let name = match code {
            1 => "Critical",
            2 => "Error",
            3 => "Warning",
            4 => "Informational",
            5 => "Verbose",
            other => return Level(Some(Cow::Owned(other.to_string()))),
        };
        Level(Some(Cow::Borrowed(name)))
    }
}

impl<'de> de::Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Level::from_text(&Text::deserialize(deserializer)?))
    }
}

/// A list of strings (`riskEventTypes_v2`); a lone string counts as a list of one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TextList(pub Option<Vec<String>>);

impl<'de> de::Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Many(Vec<Option<String>>),
            One(String),
        }
        Ok(match Option::<Shape>::deserialize(deserializer)? {
            None => TextList(None),
            Some(Shape::Many(items)) => TextList(Some(items.into_iter().flatten().collect())),
            Some(Shape::One(item)) if item.trim().is_empty() => TextList(Some(Vec::new())),
            Some(Shape::One(item)) => TextList(Some(vec![item])),
        })
    }
}

/// Writes `key` lower-cased into `buf`; keys longer than the buffer match nothing.
pub fn lowercase_key<'b>(key: &str, buf: &'b mut [u8; 64]) -> &'b str {
    let bytes = key.as_bytes();
    if bytes.len() > buf.len() {
        return "";
    }
    for (slot, b) in buf.iter_mut().zip(bytes) {
        *slot = b.to_ascii_lowercase();
    }
    // ASCII lower-casing keeps UTF-8 valid.
    std::str::from_utf8(&buf[..bytes.len()]).unwrap_or("")
}

/// A JSON object key, borrowed when it has no escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> de::Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Declares a struct read from a JSON object whose keys match case-insensitively.
/// Unknown keys are skipped; a field of the wrong type fails with the key's name.
/// Keys are written in lower case; `"a" | "b" => field` reads either spelling.
macro_rules! lenient_object {
    ($(#[$meta:meta])* pub struct $name:ident<'a> { $($($key:literal)|+ => $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name<'a> {
            $(pub $field: $ty,)*
            _borrow: std::marker::PhantomData<&'a str>,
        }

        impl<'a> $name<'a> {
            /// Every key this object reads, lower-cased: `fast` must hand over a
            /// record with one of these it does not read itself.
            #[allow(dead_code)]
            pub const LOWERCASE_KEYS: &'static [&'static str] = &[$($($key),+),*];
        }

        impl<'de: 'a, 'a> serde::Deserialize<'de> for $name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor<'a>(std::marker::PhantomData<&'a str>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for ObjectVisitor<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                        use serde::de::Error as _;
                        let mut out = $name::default();
                        let mut buf = [0u8; 64];
                        while let Some(key) = map.next_key::<$crate::record::lenient::Key<'de>>()? {
                            match $crate::record::lenient::lowercase_key(&key.0, &mut buf) {
                                $($($key)|+ => {
                                    out.$field = map.next_value().map_err(|e| A::Error::custom(format!("{}: {}", key.0, e)))?;
                                })*
                                _ => { map.next_value::<serde::de::IgnoredAny>()?; }
                            }
                        }
                        Ok(out)
                    }
                }
                deserializer.deserialize_any(ObjectVisitor(std::marker::PhantomData))
            }
        }
    };
}
pub(crate) use lenient_object;

#[cfg(test)]
mod tests {
    use super::*;

    lenient_object! {
        pub struct Sample<'a> {
            "statuscode" => status: Num<i64>,
            "duration" => duration: Num<f64>,
            "name" => name: Text<'a>,
            "level" => level: Level,
            "interactive" => interactive: Flag,
        }
    }

    fn parse(json: &str) -> Result<Sample<'_>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_as_strings_and_numbers() {
        let s = parse(r#"{"statusCode":"200","duration":"0.583700"}"#).unwrap();
        assert_eq!((s.status.0, s.duration.0), (Some(200), Some(0.5837)));
        let s = parse(r#"{"StatusCode":403,"Duration":12}"#).unwrap();
        assert_eq!((s.status.0, s.duration.0), (Some(403), Some(12.0)));
        let s = parse(r#"{"statuscode":"1.000000","duration":""}"#).unwrap();
        assert_eq!((s.status.0, s.duration.0), (Some(1), None));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse(r#"{"statusCode":"two hundred"}"#).unwrap_err().to_string();
        assert!(e.contains("statusCode") && e.contains("two hundred"), "{e}");
        let e = parse(r#"{"name":{"nested":1}}"#).unwrap_err().to_string();
        assert!(e.starts_with("name:"), "{e}");
        let e = parse(r#"{"interactive":"maybe"}"#).unwrap_err().to_string();
        assert!(e.contains("interactive"), "{e}");
    }

    #[test]
    fn absent_spellings_of_text() {
        for json in [r#"{"name":""}"#, r#"{"name":null}"#, r#"{"name":"&lt;null&gt;"}"#, r#"{}"#] {
            assert_eq!(parse(json).unwrap().name.get(), None, "{json}");
        }
        assert_eq!(parse(r#"{"NAME":"x\"y"}"#).unwrap().name.get(), Some("x\"y"));
    }

    #[test]
    fn levels_and_flags() {
        assert_eq!(parse(r#"{"Level":4}"#).unwrap().level.get(), Some("Informational"));
        assert_eq!(parse(r#"{"Level":"4"}"#).unwrap().level.get(), Some("Informational"));
        assert_eq!(parse(r#"{"level":"Warning"}"#).unwrap().level.get(), Some("Warning"));
        assert_eq!(parse(r#"{"interactive":"True"}"#).unwrap().interactive.0, Some(true));
        assert_eq!(parse(r#"{"interactive":false}"#).unwrap().interactive.0, Some(false));
    }
}
