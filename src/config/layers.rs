//! Configuration layers as figment providers, and figment errors as [`Error::Config`].

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::schema::Experiment;
use super::KNOWN_BASELINES;
use crate::error::{Error, Result};

/// One configuration layer: a named dictionary of values.
#[derive(Clone, Debug)]
pub struct Layer {
    name: String,
    path: Option<PathBuf>,
    data: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let m = Metadata::named(self.name.clone());
        match &self.path {
            Some(p) => m.source(figment::Source::File(p.clone())),
            None => m,
        }
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

impl Layer {
    /// A layer from TOML text; `name` is what messages call it.
    pub fn toml(name: &str, path: Option<&Path>, text: &str) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Config {
            source_name: name.to_string(),
            key: "(syntax)".into(),
            found: format!("invalid TOML: {}", e.message()),
            expected: format!(
                "valid TOML{}",
                e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default()
            ),
        })?;
        let data = to_dict(name, table)?;
        Ok(Self { name: name.to_string(), path: path.map(Path::to_path_buf), data })
    }

    /// The `RUNNER_TABLE__KEY=value` variables (`__` nests, names are lowercased); `None` when
    /// there are none.
    pub fn env(vars: &[(String, String)]) -> Result<Option<Self>> {
        let mut data = Dict::new();
        let mut names = Vec::new();
        for (k, v) in vars {
            let Some(rest) = k.strip_prefix("RUNNER_") else { continue };
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            insert_path(&mut data, &path, parse_scalar(v));
            names.push(k.clone());
        }
        if names.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { name: format!("environment ({})", names.join(", ")), path: None, data }))
    }

    /// A `--set key.path=value` flag; the value is read as TOML (`8`, `0.5`, `true`,
    /// `[1, 2]`, `"text"`), and as a bare string when it is not valid TOML.
    pub fn set(flag: &str) -> Result<Self> {
        let Some((key, value)) = flag.split_once('=') else {
            return Err(Error::Argument {
                arg: "--set".into(),
                found: format!("{flag:?}"),
                expected: "key.path=value".into(),
            });
        };
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
            return Err(Error::Argument {
                arg: "--set".into(),
                found: format!("{flag:?}"),
                expected: "a dotted key path before '=', e.g. mcts.alpha=0.5".into(),
            });
        }
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        let mut data = Dict::new();
        insert_path(&mut data, &path, parse_scalar(value.trim()));
        Ok(Self { name: format!("--set {key}"), path: None, data })
    }

    /// A layer setting `key.path = value` pairs (one sweep point).
    pub fn assignments(name: &str, pairs: &[(String, Value)]) -> Self {
        let mut data = Dict::new();
        for (k, v) in pairs {
            let path: Vec<String> = k.split('.').map(str::to_string).collect();
            // Re-serialising drops the tag of the layer the value was read from, so figment
            // attributes it to this layer.
            let fresh = Value::serialize(v).unwrap_or_else(|_| v.clone());
            insert_path(&mut data, &path, fresh);
        }
        Self { name: name.to_string(), path: None, data }
    }

    /// Top-level keys of this layer.
    pub fn top_keys(&self) -> Vec<String> {
        self.data.keys().cloned().collect()
    }
}

fn to_dict(name: &str, table: toml::Table) -> Result<Dict> {
    let value = Value::serialize(&table).map_err(|e| Error::Other(format!("{name}: {e}")))?;
    match value {
        Value::Dict(_, d) => Ok(d),
        _ => unreachable!("a TOML table serializes to a dictionary"),
    }
}

fn parse_scalar(text: &str) -> Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => {
            let v = t.remove("v").expect("key v was just written");
            Value::serialize(&v).unwrap_or_else(|_| Value::from(text.to_string()))
        }
        Err(_) => Value::from(text.to_string()),
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    if path.len() == 1 {
        dict.insert(path[0].clone(), value);
        return;
    }
    let entry = dict.entry(path[0].clone()).or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
    if !matches!(entry, Value::Dict(..)) {
        *entry = Value::Dict(Tag::Default, Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert_path(inner, &path[1..], value);
    }
}

/// What messages call the built-in defaults layer.
pub const DEFAULTS_NAME: &str = "built-in defaults";

/// The name of the layer that supplied `key` in `fig` ("built-in defaults", a file, ...).
pub fn source_name(fig: &Figment, key: &str) -> String {
    match fig.find_metadata(key) {
        Some(m) => m.name.to_string(),
        None => DEFAULTS_NAME.into(),
    }
}

/// Converts a figment extraction error into [`Error::Config`] naming the layer and key.
pub fn figment_error(fig: &Figment, e: figment::Error) -> Error {
    use figment::error::Kind;
    let mut path = e.path.clone();
    let (found, expected) = match &e.kind {
        Kind::UnknownField(field, allowed) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            ("an unknown key".to_string(), format!("one of: {}", allowed.join(", ")))
        }
        Kind::InvalidType(actual, exp) => (format!("{actual}"), exp.clone()),
        Kind::InvalidValue(actual, exp) => (format!("{actual}"), exp.clone()),
        Kind::UnknownVariant(v, allowed) => (format!("{v:?}"), format!("one of: {}", allowed.join(", "))),
        Kind::MissingField(f) => {
            if path.last().map(String::as_str) != Some(f.as_ref()) {
                path.push(f.to_string());
            }
            ("nothing".to_string(), "a value".to_string())
        }
        other => (format!("{other}"), "a valid value".to_string()),
    };
    let key = path.join(".");
    let source_name = match &e.metadata {
        Some(m) => m.name.to_string(),
        None => source_name(fig, &key),
    };
    Error::Config { source_name, key, found, expected }
}

/// The layer for baseline `name`: `baselines/<name>.toml` next to the experiments folder or
/// in the working directory. It may only set the table `[name]`.
pub fn baseline_layer(upper: &Figment, experiment: &Path, name: &str) -> Result<Layer> {
    if !KNOWN_BASELINES.contains(&name) {
        return Err(Error::Config {
            source_name: super::layers::source_name(upper, "baselines"),
            key: "baselines".into(),
            found: format!("{name:?}"),
            expected: format!("baseline names among: {}", KNOWN_BASELINES.join(", ")),
        });
    }
    let dir = experiment.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("../baselines").join(format!("{name}.toml")),
        dir.join("baselines").join(format!("{name}.toml")),
        PathBuf::from("baselines").join(format!("{name}.toml")),
    ];
    let Some(file) = candidates.iter().find(|p| p.is_file()) else {
        return Err(Error::Config {
            source_name: super::layers::source_name(upper, "baselines"),
            key: "baselines".into(),
            found: format!("{name:?} but no baseline file"),
            expected: format!(
                "one of these files to exist: {}",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        });
    };
    let text = crate::error::read_to_string(file)?;
    let layer = Layer::toml(&file.display().to_string(), Some(file), &text)?;
    for key in layer.top_keys() {
        if key != name {
            return Err(Error::Config {
                source_name: file.display().to_string(),
                key,
                found: "a key outside the baseline's own table".into(),
                expected: format!("only the table [{name}] (a baseline file cannot change shared settings)"),
            });
        }
    }
    Ok(layer)
}

/// The points of the `[sweep]` table: `(label, layer)`, Cartesian product in key order; one
/// point `("", None)` without a sweep.
pub fn sweep_points(fig: &Figment, exp: &Experiment) -> Result<Vec<(String, Option<Layer>)>> {
    if exp.sweep.is_empty() {
        return Ok(vec![(String::new(), None)]);
    }
    let source = source_name(fig, "sweep");
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, values) in &exp.sweep {
        if key == "sweep" || key.starts_with("sweep.") || key == "name" {
            return Err(Error::Config {
                source_name: source.clone(),
                key: format!("sweep.\"{key}\""),
                found: "a key that cannot be swept".into(),
                expected: "a setting's key path such as \"mcts.alpha\"".into(),
            });
        }
        if values.is_empty() {
            return Err(Error::Config {
                source_name: source.clone(),
                key: format!("sweep.\"{key}\""),
                found: "an empty list".into(),
                expected: "at least one value".into(),
            });
        }
        axes.push((key.clone(), values.clone()));
    }
    let mut points: Vec<Vec<(String, Value)>> = vec![vec![]];
    for (key, values) in &axes {
        let mut next = Vec::new();
        for p in &points {
            for v in values {
                let mut q = p.clone();
                q.push((key.clone(), v.clone()));
                next.push(q);
            }
        }
        points = next;
    }
    Ok(points
        .into_iter()
        .map(|pairs| {
            let label =
                pairs.iter().map(|(k, v)| format!("{k}={}", render_value(v))).collect::<Vec<_>>().join(",");
            let layer = Layer::assignments(&format!("{source} [sweep] {label}"), &pairs);
            (label, Some(layer))
        })
        .collect())
}

/// A short rendering of a value for run labels.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(_, s) => s.clone(),
        Value::Num(_, n) => match (n.to_i128(), n.to_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            (None, Some(f)) => format!("{f}"),
            (None, None) => format!("{n:?}"),
        },
        Value::Bool(_, b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
