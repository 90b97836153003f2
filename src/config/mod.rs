//! Experiment configuration: layered loading, validation, sweeps, provenance.
//!
//! Layers, lowest first: built-in defaults ([`DEFAULTS`]) < baseline files named by the
//! experiment (`baselines/<name>.toml`) < the experiment file < environment variables
//! `RUNNER_<TABLE>__<KEY>` < `--set key.path=value` < one point of the `[sweep]`.
//! Each layer is checked on its own against the schema (over the defaults), so an unknown key
//! or a wrong type is reported against the file or flag that wrote it; ranges and cross-key
//! rules are checked on the merged result ([`resolve`]) and name the layer that set the value.

mod layers;
mod resolve;
pub mod schema;

use std::path::{Path, PathBuf};

use figment::Figment;

pub use layers::Layer;
pub use resolve::{DataSource, ModelSource, Resolved};
pub use schema::Experiment;

use crate::error::{Error, Result};

/// The built-in defaults layer, compiled in.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Baseline pipelines an experiment may name.
pub const KNOWN_BASELINES: &[&str] = &["zero_shot_cot", "rft", "step_dpo"];

/// One run of an experiment: the whole experiment, or one point of its sweep.
#[derive(Clone, Debug)]
pub struct Run {
    /// `key=value` pairs of the sweep point ("" without a sweep).
    pub label: String,
    /// The training seed when the experiment lists `seeds` (`config.train_seed`), else `None`.
    pub seed: Option<u64>,
    /// The validated configuration.
    pub config: Resolved,
    /// All layers merged, for provenance.
    pub figment: Figment,
}

/// Everything `runner plan` and `runner run` need from an experiment file.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The experiment file.
    pub path: PathBuf,
    /// One entry per sweep point (one entry without a sweep).
    pub runs: Vec<Run>,
}

/// Loads, layers, validates and expands an experiment file. `sets` are `key.path=value`
/// strings from the command line; `env` is the process environment (passed in for tests).
pub fn load(path: &Path, sets: &[String], env: &[(String, String)]) -> Result<Loaded> {
    let text = crate::error::read_to_string(path)?;
    load_str(path, &text, sets, env)
}

/// [`load`] on file contents already in memory (`path` names them in messages and locates
/// the baseline files).
pub fn load_str(path: &Path, text: &str, sets: &[String], env: &[(String, String)]) -> Result<Loaded> {
    let defaults = Layer::toml(layers::DEFAULTS_NAME, None, DEFAULTS)?;
    let file = Layer::toml(&path.display().to_string(), Some(path), text)?;
    let env_layer = Layer::env(env)?;
    let set_layers = sets.iter().map(|s| Layer::set(s)).collect::<Result<Vec<_>>>()?;

    // Which baselines? Decided by every layer above the baseline files.
    let mut upper = Figment::from(&defaults).merge(&file);
    if let Some(e) = &env_layer {
        upper = upper.merge(e);
    }
    for s in &set_layers {
        upper = upper.merge(s);
    }
    let baselines: Vec<String> =
        upper.extract_inner("baselines").map_err(|e| layers::figment_error(&upper, e))?;
    let baseline_layers = baselines
        .iter()
        .map(|name| layers::baseline_layer(&upper, path, name))
        .collect::<Result<Vec<_>>>()?;

    // Each layer alone over the defaults: unknown keys and wrong types name their own layer.
    let mut all = Vec::new();
    all.extend(baseline_layers.iter());
    all.push(&file);
    all.extend(env_layer.iter());
    all.extend(set_layers.iter());
    for layer in &all {
        let fig = Figment::from(&defaults).merge(*layer);
        fig.extract::<Experiment>().map_err(|e| layers::figment_error(&fig, e))?;
    }

    let mut base = Figment::from(&defaults);
    for layer in &all {
        base = base.merge(*layer);
    }
    let merged: Experiment = base.extract().map_err(|e| layers::figment_error(&base, e))?;
    let mut runs = Vec::new();
    for (label, point) in layers::sweep_points(&base, &merged)? {
        let fig = match &point {
            Some(p) => {
                let alone = Figment::from(&defaults).merge(p);
                alone.extract::<Experiment>().map_err(|e| layers::figment_error(&alone, e))?;
                base.clone().merge(p)
            }
            None => base.clone(),
        };
        let exp: Experiment = fig.extract().map_err(|e| layers::figment_error(&fig, e))?;
        let config = resolve::resolve(exp, &fig, &label, path)?;
        // `seeds`: the same sweep point once per training seed.
        if config.exp.seeds.is_empty() {
            runs.push(Run { label, seed: None, config, figment: fig });
        } else {
            for &s in &config.exp.seeds {
                let mut c = config.clone();
                c.train_seed = s;
                runs.push(Run { label: label.clone(), seed: Some(s), config: c, figment: fig.clone() });
            }
        }
    }
    Ok(Loaded { path: path.to_path_buf(), runs })
}

/// `RUNNER_*` variables of this process, for [`load`].
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")).collect()
}

/// The resolved configuration as TOML, each value followed by the layer it came from.
pub fn annotated_toml(run: &Run) -> Result<String> {
    let body =
        toml::to_string(&run.config.exp).map_err(|e| Error::Other(format!("cannot render config: {e}")))?;
    let mut out = String::new();
    let mut table = String::new();
    for line in body.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            table = t.trim_matches(|c| c == '[' || c == ']').to_string();
            out.push_str(line);
            out.push('\n');
            continue;
        }
        match t.split_once(" = ") {
            Some((key, _)) if !t.starts_with('#') => {
                let key = key.trim_matches('"');
                let full = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
                // A sweep's keys are dotted paths themselves: the layer that wrote `[sweep]`.
                let from = if table == "sweep" {
                    layers::source_name(&run.figment, "sweep")
                } else {
                    layers::source_name(&run.figment, &full)
                };
                out.push_str(&format!("{line:<48} # {from}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
