//! The typed parse: the text straight into [`Config`], through the YAML
//! reader itself (no intermediate value), so every refusal is raised
//! while the reader is on the node at fault and carries its position.
//!
//! A listener is read knowing its mode (from [`outline`](super::marks::outline)),
//! wherever `mode:` stands among its keys: each key is taken as one of
//! every listener's fields, or handed to the mode's own struct, or
//! refused on the spot as another mode's field or no field at all.
//! serde's derive cannot do this: an internally tagged enum buffers the
//! mapping (losing positions) and `flatten` disables
//! `deny_unknown_fields`, and its messages could not name the mode.
//!
//! serde errors carry text only, so what we refuse is also noted, typed,
//! in a cell the caller reads after the reader's error comes back.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, Visitor};
use serde::Deserialize;

use super::error::Offence;
use super::listener::{HttpListener, TcpListener, UdpListener};
use super::listener::{ListenerSpec, Mode, ModeName, COMMON_FIELDS};
use super::marks::ReadError;
use super::model::{Config, PoolSpec};
use super::values::{Addr, Dur};

/// Parse `text` as a configuration whose listeners have `modes`.
pub(super) fn config(text: &str, modes: &[Option<ModeName>]) -> Result<Config, ReadError> {
    let noted = Cell::new(None);
    let seed = ConfigSeed {
        modes,
        noted: &noted,
    };
    seed.deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .map_err(|yaml| ReadError {
            yaml,
            noted: noted.take(),
        })
}

/// Raise `offence` as a reader's error of type `E`, noting it first.
fn refuse<E: de::Error>(noted: &Cell<Option<Offence>>, offence: Offence) -> E {
    let e = E::custom(&offence);
    noted.set(Some(offence));
    e
}

const TOP_FIELDS: &[&str] = &["pools", "listeners", "metrics", "grace"];

struct ConfigSeed<'a> {
    modes: &'a [Option<ModeName>],
    noted: &'a Cell<Option<Offence>>,
}

impl<'de> DeserializeSeed<'de> for ConfigSeed<'_> {
    type Value = Config;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Config, D::Error> {
        d.deserialize_struct("Config", TOP_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for ConfigSeed<'_> {
    type Value = Config;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a configuration: pools, listeners, metrics, grace")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Config, A::Error> {
        let mut pools: Option<BTreeMap<String, PoolSpec>> = None;
        let mut listeners = None;
        let mut metrics = None;
        let mut grace = None;
        while let Some(key) = map.next_key_seed(Known(TOP_FIELDS))? {
            match key {
                "pools" => pools = Some(map.next_value()?),
                "listeners" => {
                    listeners = Some(map.next_value_seed(ListenersSeed {
                        modes: self.modes,
                        noted: self.noted,
                    })?)
                }
                "metrics" => metrics = Some(map.next_value::<Option<Addr>>()?),
                _ => grace = Some(map.next_value::<Dur>()?),
            }
        }
        Ok(Config {
            pools: pools.unwrap_or_default(),
            listeners: listeners.ok_or_else(|| de::Error::missing_field("listeners"))?,
            metrics: metrics.flatten(),
            grace: grace.unwrap_or(Dur(Duration::from_secs(10))),
        })
    }
}

/// A key that must be one of a fixed list (serde's own message when not).
struct Known(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Known {
    type Value = &'static str;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Known {
    type Value = &'static str;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<&'static str, E> {
        self.0
            .iter()
            .copied()
            .find(|k| *k == key)
            .ok_or_else(|| E::unknown_field(key, self.0))
    }
}

struct ListenersSeed<'a> {
    modes: &'a [Option<ModeName>],
    noted: &'a Cell<Option<Offence>>,
}

impl<'de> DeserializeSeed<'de> for ListenersSeed<'_> {
    type Value = Vec<ListenerSpec>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListenersSeed<'_> {
    type Value = Vec<ListenerSpec>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of listeners")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(l) = seq.next_element_seed(ListenerSeed {
            mode: self.modes.get(out.len()).copied().flatten(),
            noted: self.noted,
        })? {
            out.push(l);
        }
        Ok(out)
    }
}

struct ListenerSeed<'a> {
    /// The mode the outline found; `None` when there is none to find.
    mode: Option<ModeName>,
    noted: &'a Cell<Option<Offence>>,
}

impl<'de> DeserializeSeed<'de> for ListenerSeed<'_> {
    type Value = ListenerSpec;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ListenerSpec, D::Error> {
        d.deserialize_struct("ListenerSpec", COMMON_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for ListenerSeed<'_> {
    type Value = ListenerSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a listener")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ListenerSpec, A::Error> {
        let Some(name) = self.mode else {
            // No mode the outline could read: the mode's own value is
            // read, for the reader's word on it; if there is none, say so.
            while let Some(key) = map.next_key::<String>()? {
                if key == "mode" {
                    map.next_value::<ModeName>()?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            return Err(refuse(self.noted, Offence::NoMode));
        };
        let mut common = Common::default();
        let split = Split {
            map,
            mode: name,
            common: &mut common,
            seen: Vec::new(),
            noted: self.noted,
        };
        let d = de::value::MapAccessDeserializer::new(split);
        let mode = match name {
            ModeName::Http => Mode::Http(HttpListener::deserialize(d)?),
            ModeName::Tcp => Mode::Tcp(TcpListener::deserialize(d)?),
            ModeName::Udp => Mode::Udp(UdpListener::deserialize(d)?),
        };
        let Some(listen) = common.listen else {
            return Err(refuse(self.noted, Offence::NoListen { mode: name }));
        };
        Ok(ListenerSpec {
            name: common.name,
            listen,
            trusted: common.trusted,
            mode,
        })
    }
}

/// The fields every listener has, as read so far.
#[derive(Default)]
struct Common {
    name: Option<String>,
    listen: Option<Addr>,
    trusted: Vec<String>,
}

/// A listener's mapping as its mode's struct sees it: the common keys
/// are read into `common` on the way and never reach the struct; a key
/// that is not the mode's is refused where it stands.
struct Split<'c, 'a, A> {
    map: A,
    mode: ModeName,
    common: &'c mut Common,
    /// The mode's own keys given (to refuse a missing `pool` in our words).
    seen: Vec<&'static str>,
    noted: &'a Cell<Option<Offence>>,
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Split<'_, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = seed;
        loop {
            let key = self.map.next_key_seed(SplitKey {
                seed,
                mode: self.mode,
                noted: self.noted,
            })?;
            match key {
                None => {
                    if self.mode.has_pool() && !self.seen.contains(&"pool") {
                        return Err(refuse(self.noted, Offence::NoPoolGiven { mode: self.mode }));
                    }
                    return Ok(None);
                }
                Some(Keyed::Own(field, key)) => {
                    self.seen.push(field);
                    return Ok(Some(key));
                }
                Some(Keyed::Common(field, unused)) => {
                    match field {
                        "name" => self.common.name = self.map.next_value()?,
                        "listen" => self.common.listen = Some(self.map.next_value()?),
                        "trusted" => self.common.trusted = self.map.next_value()?,
                        // Already known from the outline.
                        _ => {
                            self.map.next_value::<IgnoredAny>()?;
                        }
                    }
                    seed = unused;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A listener's key, sorted: every listener's, the mode's own (as the
/// mode struct's key), or refused.
enum Keyed<K, V> {
    /// A common field; the mode struct's key seed is handed back unused.
    Common(&'static str, K),
    /// The mode's own field, as the mode struct reads its keys.
    Own(&'static str, V),
}

struct SplitKey<'a, K> {
    seed: K,
    mode: ModeName,
    noted: &'a Cell<Option<Offence>>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for SplitKey<'_, K> {
    type Value = Keyed<K, K::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for SplitKey<'_, K> {
    type Value = Keyed<K, K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(field) = COMMON_FIELDS.iter().copied().find(|f| *f == key) {
            return Ok(Keyed::Common(field, self.seed));
        }
        if let Some(field) = self.mode.field(key) {
            let key: de::value::StrDeserializer<'_, E> = key.into_deserializer();
            return self.seed.deserialize(key).map(|k| Keyed::Own(field, k));
        }
        let other = ModeName::ALL.into_iter().find_map(|m| m.field(key));
        let offence = match other {
            Some(field) => Offence::NotForMode {
                field,
                mode: self.mode,
            },
            None => Offence::UnknownField {
                field: key.to_string(),
                mode: self.mode,
            },
        };
        Err(refuse(self.noted, offence))
    }
}
