//! Line numbers for fields of a YAML document.
//!
//! Objects are first parsed into untyped values, which carry no positions.
//! When something is wrong with a field, the file is parsed once more and
//! walked down to that field: the YAML parser then reports where it is. Only
//! the error path pays for this.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

/// One step of a field path: a map key or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `.key`
    Key(String),
    /// `[index]`
    Index(usize),
}

/// Parses `spec.ingress[0].peers[1].cidr` into steps. An empty string is the
/// document itself.
pub fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                steps.push(Step::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                match inner[..close].parse() {
                    Ok(index) => steps.push(Step::Index(index)),
                    Err(_) => steps.push(Step::Key(inner[..close].to_string())),
                }
                rest = &inner[close + 1..];
            }
        } else {
            steps.push(Step::Key(rest.to_string()));
        }
    }
    steps
}

/// A position in a file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
}

const MARKER: &str = "bulkhead-locate-marker";

/// Where the node at `path` of document `document` (0-based) starts, if it exists.
pub fn position_of(text: &str, document: usize, path: &[Step]) -> Option<Position> {
    let deserializer = serde_yaml::Deserializer::from_str(text).nth(document)?;
    let err = Walk {
        path,
        target: Marker,
        key_position: true,
    }
    .deserialize(deserializer)
    .err()?;
    if !err.to_string().contains(MARKER) {
        return None;
    }
    err.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    })
}

/// The error that deserializing the node at `path` as `T` gives, with its
/// position, or None when it deserializes (or the path does not exist).
pub fn typed_error<T: DeserializeOwned>(
    text: &str,
    document: usize,
    path: &[Step],
) -> Option<serde_yaml::Error> {
    let deserializer = serde_yaml::Deserializer::from_str(text).nth(document)?;
    let target = std::marker::PhantomData::<T>;
    Walk {
        path,
        target,
        key_position: false,
    }
    .deserialize(deserializer)
    .err()
}

/// Walks down `path`, then hands the node to `target`. Yields None when the
/// path does not exist. With `key_position`, a path that ends in a key stops
/// at the key rather than its value: that is the line a person looks for.
struct Walk<'p, S> {
    path: &'p [Step],
    target: S,
    key_position: bool,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Walk<'_, S> {
    type Value = Option<S::Value>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        match self.path.split_first() {
            None => self.target.deserialize(deserializer).map(Some),
            Some((step, rest)) => {
                let next = Walk {
                    path: rest,
                    target: self.target,
                    key_position: self.key_position,
                };
                deserializer.deserialize_any(StepVisitor { step, next })
            }
        }
    }
}

struct StepVisitor<'p, S> {
    step: &'p Step,
    next: Walk<'p, S>,
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for StepVisitor<'_, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Step::Key(wanted) = self.step else {
            return drain_map(map).map(|()| None);
        };
        if self.next.key_position && self.next.path.is_empty() {
            // Fails with the marker at the key, if the key is there.
            while map.next_key_seed(KeyProbe { wanted })?.is_some() {
                map.next_value::<IgnoredAny>()?;
            }
            return Ok(None);
        }
        let mut next = Some(self.next);
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match next.take_if(|_| &key == wanted) {
                Some(seed) => found = map.next_value_seed(seed)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Step::Index(wanted) = *self.step else {
            return drain_seq(seq).map(|()| None);
        };
        for _ in 0..wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(None);
            }
        }
        let found = seq.next_element_seed(self.next)?.flatten();
        drain_seq(seq)?;
        Ok(found)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads a map key; fails with the marker when it is `wanted`.
struct KeyProbe<'w> {
    wanted: &'w str,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        if key == self.wanted {
            Err(E::custom(MARKER))
        } else {
            Ok(())
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A target that fails wherever it lands, so the parser names the position.
struct Marker;

impl<'de> DeserializeSeed<'de> for Marker {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(MarkerVisitor)
    }
}

struct MarkerVisitor;

impl<'de> Visitor<'de> for MarkerVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
a: 1
---
kind: List
items:
- kind: Pod
  metadata:
    name: one
- kind: Pod
  metadata:
    name: two
  spec:
    nodeName: [x]
    ports:
    - 80
    - 81
";

    #[test]
    fn parses_paths() {
        use Step::*;
        assert_eq!(parse_path(""), vec![]);
        assert_eq!(
            parse_path("spec.ingress[0].peers[12].cidr"),
            vec![
                Key("spec".into()),
                Key("ingress".into()),
                Index(0),
                Key("peers".into()),
                Index(12),
                Key("cidr".into())
            ]
        );
        assert_eq!(
            parse_path("items[1][2]"),
            vec![Key("items".into()), Index(1), Index(2)]
        );
    }

    #[test]
    fn finds_positions_of_fields() {
        let at = |path: &str| position_of(TEXT, 1, &parse_path(path)).map(|p| p.line);
        assert_eq!(at("items[1].metadata.name"), Some(10));
        assert_eq!(at("items[1].spec.ports[1]"), Some(15));
        assert_eq!(
            at("items[1].spec.ports"),
            Some(13),
            "a key's own line, not its value's"
        );
        assert_eq!(at("items[0]"), Some(5));
        assert_eq!(at("items[2]"), None);
        assert_eq!(at("items[1].spec.missing"), None);
        assert_eq!(
            position_of(TEXT, 0, &parse_path("a")).map(|p| p.line),
            Some(1)
        );
    }

    #[test]
    fn typed_errors_carry_path_and_line() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Spec {
            #[serde(rename = "nodeName")]
            node_name: String,
        }
        let err = typed_error::<Spec>(TEXT, 1, &parse_path("items[1].spec")).expect("fails");
        assert_eq!(err.location().map(|l| l.line()), Some(12));
        assert!(
            err.to_string()
                .starts_with("items[1].spec.nodeName: invalid type"),
            "{err}"
        );
    }
}
