//! The `mapfleet` command line: one enum of commands, one function per command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::asl::definition::StateMachine;
use crate::asl::parse::{InvalidDefinition, parse_definition};
use crate::embedded::{EmbeddedOptions, ExecutionResult, NoTasks, Status, TaskExecutor, run_execution};
use crate::engine::ExecutionInfo;

/// Exit status of a rejected definition or input (nothing ran).
pub const EXIT_REJECTED: u8 = 2;
/// Exit status of an execution that ran and did not succeed.
pub const EXIT_FAILED: u8 = 1;

#[derive(Parser, Debug)]
#[command(name = "mapfleet", version, about = "Run AWS Step Functions state machines (Amazon States Language) on your own fleet")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a definition; prints diagnostics (code, message, location) and exits 2 when invalid.
    Validate {
        /// The state machine definition (Amazon States Language JSON).
        definition: PathBuf,
    },
    /// Run one execution in this process (embedded mode) and print its output.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The state machine definition (Amazon States Language JSON).
    pub definition: PathBuf,
    /// The execution input: a JSON file, or `-` for standard input. Default: `{}`.
    #[arg(long)]
    pub input: Option<String>,
    /// The execution name (default: a random UUID).
    #[arg(long)]
    pub name: Option<String>,
    /// Print a DescribeExecution-shaped JSON object instead of the bare output.
    #[arg(long)]
    pub describe: bool,
    /// Add the GetExecutionHistory `events` to the printed object.
    #[arg(long)]
    pub history: bool,
}

/// Entry point of the `mapfleet` binary.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { definition } => validate(&definition),
        Command::Run(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_FAILED);
                }
            };
            runtime.block_on(run(args, Arc::new(NoTasks)))
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAPFLEET_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Loads and validates a definition, printing diagnostics on failure.
pub fn load_definition(path: &Path) -> Result<StateMachine, ExitCode> {
    let text = read_text(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_REJECTED)
    })?;
    parse_definition(&text).map_err(|InvalidDefinition(diags)| {
        eprintln!("{}: invalid state machine definition", path.display());
        for d in &diags {
            eprintln!("  {d}");
        }
        ExitCode::from(EXIT_REJECTED)
    })
}

fn validate(path: &Path) -> ExitCode {
    match load_definition(path) {
        Ok(def) => {
            let states: usize = def.graphs.iter().map(|g| g.states.len()).sum();
            println!("{}: valid ({states} states)", path.display());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Reads the execution input: a file, `-` for stdin, or `{}`.
fn read_input(input: Option<&str>) -> Result<Value, String> {
    let text = match input {
        None => return Ok(json!({})),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read the input from stdin: {e}"))?;
            s
        }
        Some(path) => read_text(Path::new(path))?,
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("Invalid execution input: {e}"))?;
    if text.len() > crate::engine::PAYLOAD_LIMIT_BYTES {
        return Err(format!(
            "Invalid execution input: {} bytes exceed the {} byte limit",
            text.len(),
            crate::engine::PAYLOAD_LIMIT_BYTES
        ));
    }
    Ok(value)
}

/// Step Functions' name rules for executions and state machines.
pub fn check_name(name: &str) -> Result<(), String> {
    let bad = name.chars().find(|c| {
        c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(*c) || ('\u{7f}'..='\u{9f}').contains(c)
    });
    if name.is_empty() || name.chars().count() > 80 {
        return Err(format!("Invalid Name: '{name}' (1 to 80 characters)"));
    }
    if let Some(c) = bad {
        return Err(format!("Invalid Name: '{name}' (the character {c:?} is not allowed)"));
    }
    Ok(())
}

/// A state machine name from the definition's file name.
fn machine_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("StateMachine");
    let cleaned: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).take(80).collect();
    if cleaned.is_empty() { "StateMachine".into() } else { cleaned }
}

/// `mapfleet run` in embedded mode.
pub async fn run(args: RunArgs, executor: Arc<dyn TaskExecutor>) -> ExitCode {
    let def = match load_definition(&args.definition) {
        Ok(d) => Arc::new(d),
        Err(code) => return code,
    };
    let input = match read_input(args.input.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_REJECTED);
        }
    };
    let name = args.name.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Err(e) = check_name(&name) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_REJECTED);
    }
    let info = ExecutionInfo::new(&machine_name(&args.definition), &name, input, Utc::now());
    let opts = EmbeddedOptions { keep_history: args.history, ..Default::default() };
    let result = run_execution(def, info, executor, opts).await;
    print_result(&result, &args)
}

fn iso(t: &chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A DescribeExecution-shaped object.
pub fn describe(result: &ExecutionResult) -> Value {
    let mut obj = Map::new();
    obj.insert("executionArn".into(), json!(result.info.execution_arn));
    obj.insert("stateMachineArn".into(), json!(result.info.state_machine_arn));
    obj.insert("name".into(), json!(result.info.name));
    obj.insert("status".into(), json!(result.status.as_str()));
    obj.insert("startDate".into(), json!(iso(&result.info.start_time)));
    obj.insert("stopDate".into(), json!(iso(&result.stop_date)));
    obj.insert("input".into(), json!(result.info.input.to_string()));
    obj.insert("inputDetails".into(), json!({ "included": true }));
    if let Some(output) = &result.output {
        obj.insert("output".into(), json!(output.to_string()));
        obj.insert("outputDetails".into(), json!({ "included": true }));
    }
    // A Fail state without Error or Cause leaves them out, as AWS does.
    if let Some(e) = &result.error {
        if !e.error.is_empty() {
            obj.insert("error".into(), json!(e.error));
        }
        if !e.cause.is_empty() {
            obj.insert("cause".into(), json!(e.cause));
        }
    }
    obj.insert("redriveCount".into(), json!(result.info.redrive_count));
    Value::Object(obj)
}

fn print_result(result: &ExecutionResult, args: &RunArgs) -> ExitCode {
    let code = if result.status == Status::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) };
    if args.describe {
        let mut doc = describe(result);
        if args.history {
            doc["events"] = Value::Array(result.events.iter().map(|e| e.to_aws_json()).collect());
        }
        println!("{doc}");
        return code;
    }
    if args.history {
        let events: Vec<Value> = result.events.iter().map(|e| e.to_aws_json()).collect();
        println!("{}", json!({ "events": events }));
    }
    match (&result.output, &result.error) {
        (Some(output), _) if !args.history => {
            println!("{}", serde_json::to_string_pretty(output).unwrap_or_else(|_| output.to_string()));
        }
        (_, Some(e)) => {
            eprintln!("execution {} {}", result.info.name, result.status.as_str());
            eprintln!("error: {}", e.error);
            eprintln!("cause: {}", e.cause);
        }
        _ => {}
    }
    code
}
