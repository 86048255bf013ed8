//! The `mapfleet` command line: one enum of commands, one function per command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::asl::definition::StateMachine;
use crate::asl::parse::{InvalidDefinition, MAX_DEFINITION_BYTES, parse_definition};
use crate::embedded::{EmbeddedOptions, ExecutionResult, Status, run_execution};
use crate::engine::ExecutionInfo;

pub mod map_runs;
mod photos;
mod redrive;
mod rekognition;

/// Exit status of a rejected definition or input (nothing ran).
pub const EXIT_REJECTED: u8 = 2;
/// Exit status of an execution that ran and did not succeed.
pub const EXIT_FAILED: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "mapfleet",
    version,
    about = "Run AWS Step Functions state machines (Amazon States Language) on your own fleet"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Where buckets, the face collection and the metadata table live (embedded mode, the
    /// local photo commands, and the buckets `mapfleet coordinator` reads Distributed Maps'
    /// items from and writes their results to).
    #[arg(
        long,
        global = true,
        env = "MAPFLEET_DATA_DIR",
        default_value = "mapfleet-data"
    )]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a definition; prints diagnostics (code, message, location) and exits 2 when invalid.
    Validate {
        /// The state machine definition (Amazon States Language JSON).
        definition: PathBuf,
    },
    /// Run one execution and print its output: in this process (embedded mode), or on the
    /// fleet when `--redis`/`--amqp` (or their env vars) are given.
    Run(RunArgs),
    /// Run a coordinator of the fleet (stateless; run as many as you like).
    Coordinator(CoordinatorCommand),
    /// Distributed Map runs of the fleet (ListMapRuns, DescribeMapRun).
    #[command(subcommand)]
    MapRuns(map_runs::MapRunsCommand),
    /// Executions of the fleet: a map run's child executions.
    #[command(subcommand)]
    Executions(map_runs::ExecutionsCommand),
    /// Describe an execution of the fleet (DescribeExecution's shape).
    Describe {
        /// The execution ARN printed by `mapfleet run --detach`.
        arn: String,
        /// Add the history events.
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Print an execution's history (GetExecutionHistory's `events`).
    History {
        arn: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Print the resource ARNs and bucket names to put in place of the workshop's
    /// `REPLACE_WITH_...` values.
    Resources,
    /// Objects in the local buckets (`<data-dir>/buckets/<bucket>/<key>`).
    #[command(subcommand)]
    Objects(photos::ObjectsCommand),
    /// Face engine debugging: detect, compare, the face collection.
    #[command(subcommand)]
    Faces(photos::FacesCommand),
    /// The rider-photo metadata table.
    #[command(subcommand)]
    Metadata(photos::MetadataCommand),
    /// mapfleet's Rekognition-compatible endpoint (for `mapfleet-worker --face-engine aws`).
    #[command(subcommand)]
    Rekognition(rekognition::RekognitionCommand),
    /// The main job: load the workshop's photos and run its batch (Map) state machine.
    Demo {
        /// Where the example's definitions, input and photos are.
        #[arg(long, default_value = "examples/rider-photos")]
        examples: PathBuf,
        /// Run the batch as a Distributed Map: the photo keys read from a CSV manifest in the
        /// photo bucket, the results written to the `mapfleet-rider-results` bucket.
        #[arg(long)]
        distributed: bool,
    },
    /// Serve the Step Functions API (`aws stepfunctions --endpoint-url`, boto3, the AWS SDKs)
    /// and the web console: state machines and their executions, on the fleet when `--redis`
    /// is given, else in this process (embedded mode) with everything kept under
    /// `--data-dir`, so that a restart loses nothing it acknowledged. Requests must be
    /// SigV4-signed (service `states`) by a key pair from MAPFLEET_API_KEYS or
    /// --credentials-file, unless --allow-anonymous.
    Serve(crate::api::ServeArgs),
    /// Redrive an execution of the fleet that ended FAILED, ABORTED or TIMED_OUT
    /// (RedriveExecution): it runs again from the state it ended in, the children of a Map
    /// or Parallel that succeeded kept; waits for its end and prints it as `describe` does.
    Redrive(redrive::RedriveArgs),
    /// Stop an execution of the fleet (it ends ABORTED).
    Stop {
        arn: String,
        /// The error recorded in ExecutionAborted.
        #[arg(long, default_value = "")]
        error: String,
        /// The cause recorded in ExecutionAborted.
        #[arg(long, default_value = "")]
        cause: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

/// Where the fleet is, for its clients (`run`, `serve`, `describe`, `history`, `stop`,
/// `map-runs`, `executions`, the face and metadata commands): one set of flags, each also a
/// `MAPFLEET_*` variable. A client needs only Redis; `--amqp` says "on the fleet" to the
/// commands that also run in this process. The Redis password comes from
/// MAPFLEET_REDIS_PASSWORD or `--redis-password-file`, never from a flag's value (`ps` shows
/// those): see `shared::credentials`.
#[derive(Args, Clone)]
pub struct FleetArgs {
    /// The fleet's Redis (`redis://[user@]host:port/db`; default `redis://127.0.0.1:6379/`
    /// where a command needs one).
    #[arg(long, env = "MAPFLEET_REDIS_URL")]
    pub redis: Option<String>,
    /// A file holding the Redis password (a final line break is ignored). Or
    /// MAPFLEET_REDIS_PASSWORD, read from the environment only.
    #[arg(long, env = "MAPFLEET_REDIS_PASSWORD_FILE", value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// The fleet's RabbitMQ (its coordinators and workers use it; a client does not).
    #[arg(long, env = "MAPFLEET_AMQP_URL")]
    pub amqp: Option<String>,
    /// The fleet's namespace of queues and keys.
    #[arg(long, env = "MAPFLEET_PREFIX", default_value = "mapfleet")]
    pub prefix: String,
}

/// The Redis a client uses when it is on the fleet without `--redis`.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379/";

impl FleetArgs {
    /// No fleet: what embedded mode runs with.
    pub fn none() -> FleetArgs {
        FleetArgs {
            redis: None,
            redis_password_file: None,
            amqp: None,
            prefix: "mapfleet".into(),
        }
    }

    /// Whether a fleet is named (`--redis` or `--amqp`, or their variables).
    pub fn given(&self) -> bool {
        self.redis.is_some() || self.amqp.is_some()
    }

    /// The Redis URL with its password merged in (print it through `redact_url` only).
    pub fn redis_url(&self) -> Result<String, shared::credentials::CredentialError> {
        if let Some(amqp) = &self.amqp {
            shared::credentials::warn_if_on_command_line(amqp, shared::credentials::Service::Amqp);
        }
        shared::credentials::with_password(
            self.redis.as_deref().unwrap_or(DEFAULT_REDIS),
            shared::credentials::Service::Redis,
            self.redis_password_file.as_deref(),
        )
    }

    /// A client of the fleet's Redis.
    pub async fn client(&self) -> anyhow::Result<crate::fleet::client::FleetClient> {
        Ok(crate::fleet::client::FleetClient::connect(&self.redis_url()?, &self.prefix).await?)
    }
}

impl std::fmt::Debug for FleetArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |u: &Option<String>| u.as_deref().map(shared::config::redact_url);
        f.debug_struct("FleetArgs")
            .field("redis", &shown(&self.redis))
            .field("redis_password_file", &self.redis_password_file)
            .field("amqp", &shown(&self.amqp))
            .field("prefix", &self.prefix)
            .finish()
    }
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
    /// Run on this fleet (`--redis` or `--amqp` given) instead of in this process.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// On the fleet: print the execution ARN and return without waiting.
    #[arg(long)]
    pub detach: bool,
    /// In this process: most Task steps running at once (a Map's items wait for a slot
    /// before their task starts, so their memory too). Default: twice the CPU cores, at
    /// least 8. Full image decodes are bounded apart from this, by
    /// `MAPFLEET_DECODE_BUDGET_BYTES` (default a quarter of the available memory).
    #[arg(long, env = "MAPFLEET_TASK_SLOTS", default_value_t = crate::embedded::default_task_slots())]
    pub task_slots: usize,
    /// The largest state input or output in bytes (`States.DataLimitExceeded` above it), and
    /// of the execution input. AWS's 256 KiB by default; raise it (up to 64 MiB) for inline
    /// Maps whose results need more. Applies to runs in this process; on the fleet the
    /// coordinators' own setting applies to the states.
    #[arg(
        long,
        env = "MAPFLEET_MAX_PAYLOAD_BYTES",
        default_value_t = crate::engine::PAYLOAD_LIMIT_BYTES,
        value_parser = crate::engine::parse_payload_limit
    )]
    pub max_payload_bytes: usize,
    /// The most history events one cursor (the execution's top level, a Parallel branch, a
    /// Map iteration) may write before the execution fails with `States.Runtime`: AWS's
    /// 25,000 by default, which ends a looping definition; 0 turns the cap off (a loop then
    /// runs until the definition's TimeoutSeconds). In this process only.
    #[arg(
        long,
        env = "MAPFLEET_MAX_HISTORY_EVENTS",
        default_value_t = crate::engine::run::MAX_HISTORY_EVENTS
    )]
    pub max_history_events: u64,
    /// In this process: where Distributed Maps' ItemReader objects and ResultWriter files
    /// are (the local buckets under `--data-dir` by default, or S3 / an S3-compatible server,
    /// as for `mapfleet coordinator`). On the fleet the coordinators' own flags apply.
    #[command(flatten)]
    pub objects: worker::providers::ObjectStoreArgs,
    /// Filled from the global `--data-dir`.
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// Called with the output of a successful run before it is printed (the demo's
    /// summary table); not a flag.
    #[arg(skip)]
    pub before_output: Option<fn(&Value)>,
}

/// `mapfleet coordinator`: the coordinator's flags, and the object store its Distributed
/// Maps read their items from and write their result files to (the local buckets under
/// `--data-dir`, or S3 / an S3-compatible server, with the worker's flags).
#[derive(Args, Debug)]
pub struct CoordinatorCommand {
    #[command(flatten)]
    pub coordinator: crate::fleet::command::CoordinatorArgs,
    /// Where Distributed Maps' ItemReader objects and ResultWriter files are.
    #[command(flatten)]
    pub objects: worker::providers::ObjectStoreArgs,
}

/// Entry point of the `mapfleet` binary.
pub fn main() -> ExitCode {
    shared::process::init_tracing("warn");
    let cli = Cli::parse();
    match &cli.command {
        Command::Validate { definition } => return validate(definition),
        Command::Resources => return photos::resources(),
        _ => {}
    }
    let data_dir = cli.data_dir.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async move {
        let result = match cli.command {
            Command::Validate { .. } | Command::Resources => unreachable!("handled above"),
            Command::Run(mut args) => {
                args.data_dir = data_dir;
                return run(args).await;
            }
            Command::Objects(cmd) => photos::objects(&data_dir, cmd).await,
            Command::Faces(cmd) => photos::faces(&data_dir, cmd).await,
            Command::Metadata(cmd) => photos::metadata(&data_dir, cmd).await,
            Command::Demo {
                examples,
                distributed,
            } => photos::demo(&data_dir, &examples, distributed).await,
            Command::Serve(args) => crate::api::serve(args, &data_dir).await,
            Command::Rekognition(cmd) => rekognition::rekognition(&data_dir, cmd).await,
            // The coordinator reads Distributed Maps' items from, and writes their results
            // to, the object store its flags choose: the local buckets under the data dir, as
            // embedded mode does, or S3.
            Command::Coordinator(args) => {
                let store = args.objects.object_store(&data_dir).await;
                crate::fleet::command::run_with(
                    args.coordinator,
                    crate::fleet::maprun::MapRunStore::new(Arc::new(crate::buckets::StoreBuckets(
                        store,
                    ))),
                )
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
            }
            Command::Describe {
                arn,
                history,
                fleet,
            } => describe_fleet(&arn, history, &fleet).await,
            Command::History { arn, fleet } => history_fleet(&arn, &fleet).await,
            Command::MapRuns(cmd) => map_runs::map_runs(cmd).await,
            Command::Executions(cmd) => map_runs::executions(&data_dir, cmd).await,
            Command::Stop {
                arn,
                error,
                cause,
                fleet,
            } => stop_fleet(&arn, &error, &cause, &fleet).await,
            Command::Redrive(args) => redrive::redrive(args).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    })
}

async fn describe_fleet(arn: &str, history: bool, fleet: &FleetArgs) -> anyhow::Result<ExitCode> {
    let client = fleet.client().await?;
    let result = client.describe(arn, history).await?;
    let mut doc = describe(&result);
    if history {
        doc["events"] = Value::Array(result.events.iter().map(|e| e.to_aws_json()).collect());
    }
    println!("{doc}");
    Ok(ExitCode::SUCCESS)
}

async fn history_fleet(arn: &str, fleet: &FleetArgs) -> anyhow::Result<ExitCode> {
    let client = fleet.client().await?;
    let events: Vec<Value> = client
        .history(arn)
        .await?
        .iter()
        .map(|e| e.to_aws_json())
        .collect();
    println!("{}", json!({ "events": events }));
    Ok(ExitCode::SUCCESS)
}

async fn stop_fleet(
    arn: &str,
    error: &str,
    cause: &str,
    fleet: &FleetArgs,
) -> anyhow::Result<ExitCode> {
    let client = fleet.client().await?;
    client.stop(arn, error, cause).await?;
    eprintln!("stop requested for {arn}");
    Ok(ExitCode::SUCCESS)
}

/// Why a definition, an input or a name given on the command line is refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: String,
        limit: usize,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} ({path}) is not UTF-8 text")]
    NotUtf8 { what: &'static str, path: String },
    #[error("Invalid execution input: {0}")]
    Input(Box<InputError>),
    #[error("Invalid execution input: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Invalid Name: '{name}' ({why})")]
    Name { name: String, why: String },
}

/// Reads a whole text file, or stdin for `-`, refusing (without reading it all) one over
/// `limit` bytes: a huge file must cost an error, not the memory to hold and parse it.
fn read_text(path: &Path, limit: usize, what: &'static str) -> Result<String, InputError> {
    let too_large = |size: String| InputError::TooLarge { what, size, limit };
    let stdin = path == Path::new("-");
    let cannot = |source: std::io::Error| InputError::Read {
        path: if stdin {
            format!("{what} from stdin")
        } else {
            path.display().to_string()
        },
        source,
    };
    let mut bytes = Vec::new();
    if stdin {
        std::io::stdin()
            .lock()
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        if bytes.len() > limit {
            return Err(too_large(format!("more than {limit}")));
        }
    } else {
        let file = std::fs::File::open(path).map_err(cannot)?;
        let size = file.metadata().map_err(cannot)?.len();
        if size > limit as u64 {
            return Err(too_large(size.to_string()));
        }
        // Bounded even so: the file may grow, or be a pipe whose size says nothing.
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        if bytes.len() > limit {
            return Err(too_large(format!("more than {limit}")));
        }
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotUtf8 {
        what,
        path: path.display().to_string(),
    })
}

/// A definition's text, refused unread when over Step Functions' 1 MiB limit.
pub fn read_definition_text(path: &Path) -> Result<String, InputError> {
    read_text(path, MAX_DEFINITION_BYTES, "the definition")
}

/// Loads and validates a definition, printing diagnostics on failure.
pub fn load_definition(path: &Path) -> Result<StateMachine, ExitCode> {
    let text = read_definition_text(path).map_err(|e| {
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

/// Reads the execution input: a file, `-` for stdin, or `{}`. Input over the payload limit
/// is refused before it is parsed, and read no further than the limit.
fn read_input(input: Option<&str>, limit: usize) -> Result<Value, InputError> {
    let text = match input {
        None => return Ok(json!({})),
        Some(path) => read_text(Path::new(path), limit, "the execution input")
            .map_err(|e| InputError::Input(Box::new(e)))?,
    };
    Ok(serde_json::from_str(&text)?)
}

/// Step Functions' name rules for executions and state machines.
pub fn check_name(name: &str) -> Result<(), InputError> {
    let bad = name.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(*c)
            || ('\u{7f}'..='\u{9f}').contains(c)
    });
    let refuse = |why: String| InputError::Name {
        name: name.to_string(),
        why,
    };
    if name.is_empty() || name.chars().count() > 80 {
        return Err(refuse("1 to 80 characters".into()));
    }
    if let Some(c) = bad {
        return Err(refuse(format!("the character {c:?} is not allowed")));
    }
    Ok(())
}

/// A state machine name from the definition's file name.
fn machine_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("StateMachine");
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    if cleaned.is_empty() {
        "StateMachine".into()
    } else {
        cleaned
    }
}

/// `mapfleet run`: embedded mode, or the fleet when a Redis/AMQP URL is configured.
pub async fn run(args: RunArgs) -> ExitCode {
    let text = match read_definition_text(&args.definition) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_REJECTED);
        }
    };
    let def = match load_definition(&args.definition) {
        Ok(d) => Arc::new(d),
        Err(code) => return code,
    };
    let input = match read_input(args.input.as_deref(), args.max_payload_bytes) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_REJECTED);
        }
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Err(e) = check_name(&name) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_REJECTED);
    }
    let info = ExecutionInfo::new(&machine_name(&args.definition), &name, input, Utc::now());
    if args.fleet.given() {
        return match run_on_fleet(&args, &text, &def, info).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_FAILED)
            }
        };
    }
    let executor = match crate::tasks::embedded_executor(&args.data_dir, &def).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut opts = EmbeddedOptions {
        keep_history: args.history,
        task_slots: args.task_slots,
        ..Default::default()
    };
    opts.engine.payload_limit = args.max_payload_bytes;
    opts.engine.max_history_events = args.max_history_events;
    opts.buckets = Some(Arc::new(crate::buckets::StoreBuckets(
        args.objects.object_store(&args.data_dir).await,
    )));
    let result = run_execution(def, info, executor, opts).await;
    let code = print_result(&result, &args);
    // The process ends after this command: freeing a large output and input value by value
    // (a 10,000-item Map's) would cost a sizeable share of the whole run, for nothing.
    std::mem::forget(result);
    code
}

/// `mapfleet run` forced to embedded mode (the demo, whatever the environment says).
pub async fn run_embedded(mut args: RunArgs) -> ExitCode {
    args.fleet = FleetArgs::none();
    run(args).await
}

async fn run_on_fleet(
    args: &RunArgs,
    text: &str,
    def: &StateMachine,
    info: ExecutionInfo,
) -> anyhow::Result<ExitCode> {
    let client = args.fleet.client().await?;
    client.submit(text, def, &info).await?;
    if args.detach {
        println!("{}", info.execution_arn);
        return Ok(ExitCode::SUCCESS);
    }
    let total = map_items_hint(def, &info.input);
    let mut result = client.wait(&info.execution_arn, total).await?;
    if args.history {
        result.events = client.history(&info.execution_arn).await?;
    }
    Ok(print_result(&result, args))
}

/// The item count of a top-level Map reading `ItemsPath` from the input, for the progress bar.
fn map_items_hint(def: &StateMachine, input: &Value) -> Option<usize> {
    def.root.states.iter().find_map(|s| match &s.kind {
        crate::asl::definition::StateKind::Map(spec) => {
            let path = spec.items_path.as_ref()?.as_str().strip_prefix("$.")?;
            input.get(path)?.as_array().map(Vec::len)
        }
        _ => None,
    })
}

fn iso(t: &chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A DescribeExecution-shaped object.
pub fn describe(result: &ExecutionResult) -> Value {
    let mut obj = Map::new();
    obj.insert("executionArn".into(), json!(result.info.execution_arn));
    obj.insert(
        "stateMachineArn".into(),
        json!(result.info.state_machine_arn),
    );
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
    for (k, v) in crate::fleet::redrive::describe_members(result.status, &result.info) {
        obj.insert(k.into(), v);
    }
    if let Some(d) = &result.info.redrive_date {
        obj.insert("redriveDate".into(), json!(iso(d)));
    }
    Value::Object(obj)
}

fn print_result(result: &ExecutionResult, args: &RunArgs) -> ExitCode {
    let code = if result.status == Status::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    };
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
            if let Some(hook) = args.before_output {
                hook(output);
            }
            // Streamed: a large output is never held whole as text.
            let mut stdout = std::io::stdout().lock();
            let written = crate::pretty::write_pretty(&mut stdout, output)
                .and_then(|()| writeln!(stdout))
                .and_then(|()| stdout.flush());
            if let Err(e) = written {
                eprintln!("error: cannot write the output: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
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
