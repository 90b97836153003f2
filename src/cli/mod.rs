//! Command-line arguments (clap) and their dispatch to the library.
//!
//! Low-level arguments are checked here and turned into library calls; every command returns
//! [`crate::Result`] so `main` prints one error chain and exits non-zero. The commands that
//! are not experiment runs have their own files: `model` (generate, score), `bench`, `grade`
//! and `mcts`.

pub mod bench;
pub mod grade;
pub mod mcts;
pub mod model;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::error::{Error, Result};

/// `runner`: reproduces "Enhancing Reasoning through Process Supervision with Monte Carlo Tree
/// Search" (arXiv 2501.01478) from a TOML experiment file.
#[derive(Debug, Parser)]
#[command(name = "runner", version, args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct Cli {
    /// Experiment file to run (the same as `runner run FILE`).
    pub file: Option<PathBuf>,
    /// Override a setting: `--set mcts.alpha=0.5` (repeatable; highest precedence).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every pipeline of an experiment (resuming finished stages) and write its tables.
    Run(ExperimentArgs),
    /// Print the resolved config with each value's origin and the runs, without computing.
    Plan(ExperimentArgs),
    /// Sample a completion from a model and print it as JSON.
    Generate(crate::cli::model::GenerateArgs),
    /// Print the per-token log-probabilities of a text under a model as JSON.
    Score(crate::cli::model::ScoreArgs),
    /// Benchmarks (`runner bench generate|train ...`).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run MCTS data generation for iteration 1 of an experiment and report its statistics.
    Mcts(ExperimentArgs),
    /// Compute one shard of a stage of an experiment (started by the `workers` executor): the
    /// items `j % count == index`, written into the stage folder; earlier stages must be done.
    Shard {
        /// The experiment TOML file.
        file: PathBuf,
        /// Override a setting (as for `runner run`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The stage folder name (`kind-hash`, as in results/<experiment>/cache/).
        #[arg(long)]
        stage: String,
        /// This shard, 0-based.
        #[arg(long)]
        index: usize,
        /// Shards in all.
        #[arg(long)]
        count: usize,
    },
    /// Grade answers with a task's grader (`--task math FILE.jsonl`), or re-grade a finished
    /// evaluation (`--eval DIR`) and compare with its stored verdicts.
    Grade(crate::cli::grade::GradeArgs),
    /// Rebuild table.md, table.csv and the plots of a results folder from its artifacts.
    Table {
        /// The results folder (`results/<experiment>`).
        dir: PathBuf,
    },
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generation throughput: prefill and decode tokens/s, time to first token, peak memory.
    Generate(crate::cli::bench::BenchGenerateArgs),
    /// Training throughput: seconds per optimiser step (LoRA or full) at a model shape.
    Train(crate::cli::bench::BenchTrainArgs),
}

/// An experiment file and overrides.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The experiment TOML file.
    pub file: PathBuf,
    /// Override a setting: `--set mcts.alpha=0.5` (repeatable; highest precedence).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    match (cli.command, cli.file) {
        (Some(Command::Run(a)), _) => run(&a),
        (Some(Command::Plan(a)), _) => plan(&a),
        (Some(Command::Generate(a)), _) => crate::cli::model::generate(&a),
        (Some(Command::Score(a)), _) => crate::cli::model::score(&a),
        (Some(Command::Bench(BenchCommand::Generate(a))), _) => crate::cli::bench::bench_generate(&a),
        (Some(Command::Bench(BenchCommand::Train(a))), _) => crate::cli::bench::bench_train(&a),
        (Some(Command::Mcts(a)), _) => crate::cli::mcts::mcts(&load(&a)?),
        (Some(Command::Table { dir }), _) => crate::pipeline::run::table(&dir),
        (Some(Command::Grade(a)), _) => crate::cli::grade::grade(&a),
        (Some(Command::Shard { file, set, stage, index, count }), _) => {
            if count == 0 || index >= count {
                return Err(Error::Other(format!(
                    "runner shard: --index {index} must be below --count {count}"
                )));
            }
            crate::stage::set_shard(crate::stage::Shard { stage, index, count });
            match run(&ExperimentArgs { file, set }) {
                Err(Error::ShardDone) => Ok(()),
                Ok(()) => Err(Error::Other(
                    "runner shard: the stage was not found in the experiment (or is already finished)".into(),
                )),
                Err(e) => Err(e),
            }
        }
        (None, Some(file)) => run(&ExperimentArgs { file, set: cli.set }),
        (None, None) => Ok(()),
    }
}

fn load(a: &ExperimentArgs) -> Result<config::Loaded> {
    config::load(&a.file, &a.set, &config::process_env())
}

fn plan(a: &ExperimentArgs) -> Result<()> {
    let loaded = load(a)?;
    for run in &loaded.runs {
        if loaded.runs.len() > 1 {
            println!("# ---- run: {} ----", run.label);
        }
        print!("{}", config::annotated_toml(run)?);
        println!();
    }
    println!("# {} run(s):", loaded.runs.len());
    let mut described: Vec<Vec<String>> = Vec::new();
    for run in &loaded.runs {
        let label = match (run.label.as_str(), run.seed) {
            ("", None) => "(single run)".to_string(),
            ("", Some(s)) => format!("seed {s}"),
            (l, None) => l.to_string(),
            (l, Some(s)) => format!("{l}, seed {s}"),
        };
        let problems = crate::stage::split_problems(&run.config)?;
        let stages = crate::pipeline::run::plan(&run.config, Some(problems.test.len()));
        println!("#   {label}: {} stages", stages.len());
        // The problems are the same for every seed and sweep point that does not change [task]:
        // described once per distinct description.
        let data = crate::stage::problems::describe(&run.config, &problems)?;
        if described.last() != Some(&data) {
            for line in &data {
                println!("#     {line}");
            }
            described.push(data);
        }
        let x = &run.config.exp.executor;
        for s in stages {
            use crate::config::schema::ExecutorKind as K;
            let items = match (s.items, x.kind) {
                (Some((what, n)), K::Local) => format!("splits into {n} items ({what}); runs here"),
                (Some((what, n)), K::Workers) => {
                    format!("splits into {n} items ({what}); {} worker processes", x.shards(n))
                }
                (Some((what, n)), K::Slurm) => {
                    format!("splits into {n} items ({what}); slurm array of {} tasks", x.shards(n))
                }
                (None, K::Slurm) => "one job (one slurm job)".to_string(),
                (None, _) => "one job".to_string(),
            };
            println!("#     {:<10} {:<64} {items}", s.kind, s.label);
        }
    }
    println!("# results: {}", crate::pipeline::run::out_dir(&loaded.runs[0].config).display());
    Ok(())
}

fn run(a: &ExperimentArgs) -> Result<()> {
    crate::pipeline::set_launch(crate::pipeline::Launch { file: a.file.clone(), sets: a.set.clone() });
    crate::pipeline::run::run_experiment(&load(a)?)
}
