//! A system's section of the cluster file: the top-level key named after the
//! system (`tokens:`), read by the system's own type with the same file:line
//! errors as the generic fields, and refused when it names another system.

use super::{yaml_error, Cluster, ConfigError, Ctx, SystemParams};
use crate::system::{System, SYSTEMS};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Checks the top-level keys serde did not read: the running system's
/// section is expected, another system's section or any other key is an
/// error that says which.
pub(super) fn check_top_level(
    ctx: &Ctx,
    system: &str,
    ignored: &[String],
    fields: &[&str],
) -> Result<(), ConfigError> {
    check_keys(ctx, system, ignored, fields, SYSTEMS)
}

fn check_keys(
    ctx: &Ctx,
    system: &str,
    ignored: &[String],
    fields: &[&str],
    systems: &[&str],
) -> Result<(), ConfigError> {
    for key in ignored {
        if key == system && systems.contains(&key.as_str()) {
            continue;
        }
        if systems.contains(&key.as_str()) {
            return Err(ctx.err(
                key,
                format!("section `{key}:` is for system {key}, but this file runs system {system}"),
                format!("remove the section, or set `system: {key}`"),
            ));
        }
        return Err(ctx.err(
            key,
            format!("unknown field `{key}`"),
            format!(
                "remove the field or correct its spelling (top-level fields: {}, and a section named after the system)",
                fields.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Reads `S`'s section from the file's text (so errors keep their line and
/// field path) and validates it into `S::Params`; returns them with the
/// system's operation deadline.
pub(super) fn params<S: System>(
    ctx: &Ctx,
    text: &str,
    cluster: &Cluster,
) -> Result<(SystemParams, Duration), ConfigError> {
    let seed = SectionSeed::<S::Section> {
        key: S::NAME,
        _t: PhantomData,
    };
    let section = seed
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| {
            // serde_yaml's path names the section (`tokens.bugs`).
            yaml_error(
                &cluster.path,
                text,
                &e,
                "see the cluster file reference in README.md",
            )
        })?
        .unwrap_or_default();
    let params = S::params(ctx, cluster, section)?;
    let deadline = S::op_deadline(&params);
    Ok((SystemParams(Arc::new(params)), deadline))
}

/// Deserialises the value under `key` of the top-level map, skipping the rest.
struct SectionSeed<T> {
    key: &'static str,
    _t: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for SectionSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SectionSeed<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a cluster file (a YAML map)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<String>()? {
            if k == self.key {
                found = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn another_systems_section_and_an_unknown_key_are_refused_by_name() {
        let text = "system: tokens\nsmr:\n  replicas: 3\nnodez: []\n";
        let ctx = Ctx::new(Path::new("c.yaml"), text);
        let systems = ["tokens", "smr"];
        let own = check_keys(&ctx, "tokens", &["tokens".into()], &["system"], &systems);
        assert!(own.is_ok());
        let e = check_keys(&ctx, "tokens", &["smr".into()], &["system"], &systems)
            .expect_err("another system's section")
            .to_string();
        assert!(e.contains("c.yaml:2:1: field `smr`: section `smr:` is for system smr, but this file runs system tokens"), "{e}");
        assert!(e.contains("set `system: smr`"), "{e}");
        let e = check_keys(
            &ctx,
            "tokens",
            &["nodez".into()],
            &["system", "nodes"],
            &systems,
        )
        .expect_err("a typo")
        .to_string();
        assert!(
            e.contains("c.yaml:4:1: field `nodez`: unknown field `nodez`"),
            "{e}"
        );
        assert!(e.contains("top-level fields: system, nodes"), "{e}");
    }
}
