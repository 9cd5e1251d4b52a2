//! Positions from the YAML reader. serde_yaml_ng shows no marks on the
//! values it reads, only on its errors: an error raised while the reader
//! is on a node is stamped with that node's line and column. So the text
//! is walked once more, through serde, and the walk stops with an error
//! on the node wanted; its stamp is the answer. The same reader as the
//! real parse, so both see one document (aliases, flow and block styles,
//! CR line breaks) and no second YAML implementation can disagree.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, Visitor};

use super::error::{KeyPath, Location, Offence, Step};
use super::listener::ModeName;

/// A refusal from the reader, with the offence a walk or a seed noted
/// before raising it (`None`: the reader's own refusal).
#[derive(Debug)]
pub(super) struct ReadError {
    /// The reader's error, which carries the position.
    pub yaml: serde_yaml_ng::Error,
    /// The typed offence behind it, if ours.
    pub noted: Option<Offence>,
}

impl ReadError {
    /// The offence and where it stands in `text`.
    pub fn located(self, text: &str) -> (Offence, Option<Location>) {
        let at = self.yaml.location();
        let offence = self.noted.unwrap_or_else(|| {
            let message = self.yaml.to_string();
            // The reader ends its message with its own position; ours is
            // given apart, counted as editors count lines.
            let message = match &at {
                Some(l) => {
                    let own = format!(" at line {} column {}", l.line(), l.column());
                    match message.find(&own) {
                        Some(i) => message[..i].to_string(),
                        None => message,
                    }
                }
                None => message,
            };
            Offence::Yaml { message }
        });
        (offence, at.map(|l| Location::at(text, l.index())))
    }
}

/// Each listener's mode as written (`None` where there is none or it is
/// not a mode name), read before the listeners themselves so that their
/// fields can be checked against it wherever `mode:` stands. The walk
/// also refuses a key repeated in any mapping, at its second occurrence.
pub(super) fn outline(text: &str) -> Result<Vec<Option<ModeName>>, ReadError> {
    let modes = RefCell::new(Vec::new());
    let noted = Cell::new(None);
    let walk = Walk {
        at: Place::Top,
        modes: &modes,
        noted: &noted,
    };
    match walk.deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Ok(()) => Ok(modes.into_inner()),
        Err(yaml) => Err(ReadError {
            yaml,
            noted: noted.take(),
        }),
    }
}

/// Where in the document a walk is.
#[derive(Clone, Copy)]
enum Place {
    Top,
    Listeners,
    Listener(usize),
    Mode(usize),
    Other,
}

struct Walk<'a> {
    at: Place,
    modes: &'a RefCell<Vec<Option<ModeName>>>,
    noted: &'a Cell<Option<Offence>>,
}

impl<'a> Walk<'a> {
    fn to(&self, at: Place) -> Walk<'a> {
        Walk {
            at,
            modes: self.modes,
            noted: self.noted,
        }
    }

    fn scalar(&self, s: &str) {
        if let Place::Mode(i) = self.at {
            if let Some(slot) = self.modes.borrow_mut().get_mut(i) {
                *slot = ModeName::ALL.into_iter().find(|m| m.as_str() == s);
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key_seed(Once {
            seen: &mut seen,
            noted: self.noted,
        })? {
            let next = match (self.at, key.as_str()) {
                (Place::Top, "listeners") => Place::Listeners,
                (Place::Listener(i), "mode") => Place::Mode(i),
                _ => Place::Other,
            };
            map.next_value_seed(self.to(next))?;
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let next = match self.at {
                Place::Listeners => {
                    self.modes.borrow_mut().push(None);
                    Place::Listener(i)
                }
                _ => Place::Other,
            };
            if seq.next_element_seed(self.to(next))?.is_none() {
                if let Place::Listeners = self.at {
                    self.modes.borrow_mut().pop();
                }
                return Ok(());
            }
            i += 1;
        }
    }

    // A tagged node (`!tcp`): serde_yaml_ng reads a unit enum's variant
    // from the tag, so a mode may be written so.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let (tag, value): (String, _) = data.variant()?;
        self.scalar(&tag);
        value.newtype_variant_seed(self.to(Place::Other))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.scalar(s);
        Ok(())
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
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A mapping's key, refused if the mapping had it already: raised while
/// the reader is on the second one, which is where the error points.
struct Once<'s, 'a> {
    seen: &'s mut BTreeSet<String>,
    noted: &'a Cell<Option<Offence>>,
}

impl<'de> DeserializeSeed<'de> for Once<'_, '_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        // Every key of this file is a word; a key the reader cannot give
        // as text is refused here as it would be by the typed parse.
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Once<'_, '_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if self.seen.insert(key.to_string()) {
            return Ok(key.to_string());
        }
        let offence = Offence::RepeatedKey { key: key.into() };
        let e = E::custom(&offence);
        self.noted.set(Some(offence));
        Err(e)
    }
}

/// Where `key` stands in `text`: its last key's position (or its last
/// element's); when the file does not spell it out (a default), the
/// nearest enclosing one that it does. `None` for the empty path.
pub(super) fn locate(text: &str, key: &KeyPath) -> Option<Location> {
    (1..=key.0.len())
        .rev()
        .find_map(|len| seek(text, &key.0[..len]))
}

fn seek(text: &str, path: &[Step]) -> Option<Location> {
    let found = Cell::new(false);
    let seek = Seek {
        rest: path,
        found: &found,
    };
    match seek.deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Err(e) if found.get() => e.location().map(|l| Location::at(text, l.index())),
        _ => None,
    }
}

/// A walk down `rest` that stops with an error on its last step.
struct Seek<'p, 'a> {
    rest: &'p [Step],
    found: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.rest {
            [] => {
                self.found.set(true);
                // Every visit of a visitor that only says what it expects
                // is an error, raised with the reader on this node.
                d.deserialize_any(Here)
            }
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.rest.split_first() else {
            return Ok(());
        };
        while let Some(hit) = map.next_key_seed(SeekKey {
            want,
            last: rest.is_empty(),
            found: self.found,
        })? {
            if hit {
                return map.next_value_seed(Seek {
                    rest,
                    found: self.found,
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.rest.split_first() else {
            return Ok(());
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek {
            rest,
            found: self.found,
        })?;
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
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
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A key compared with the one wanted; the last one wanted stops the
/// walk on itself.
struct SeekKey<'w, 'a> {
    want: &'w str,
    last: bool,
    found: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for SeekKey<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for SeekKey<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key != self.want {
            return Ok(false);
        }
        if self.last {
            self.found.set(true);
            return Err(E::custom("found"));
        }
        Ok(true)
    }
}

/// Refuses whatever it is given (see [`Seek`]).
struct Here;

impl Visitor<'_> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing: the walk stops here")
    }
}
