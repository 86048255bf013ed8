//! Exchange and queue names, and the one function that declares them.
//!
//! ```text
//!                      ┌─ routing key = resource ARN (direct) ─▶ {p}.steps.<route>   (quorum)
//! publish step ─▶ {p}.steps ─┤
//!                      └─ no route matched: alternate exchange {p}.steps.default (fanout)
//!                                                            ─▶ {p}.steps.default (quorum)
//! publish outcome ─▶ "" (default exchange) ─▶ {p}.outcomes (quorum)
//!
//! any quorum queue ── delivery limit exceeded / rejected ──▶ {p}.dlx (fanout) ─▶ {p}.dead
//! ```
//!
//! Steps route by resource: a deployment that wants heavy tasks on their own workers adds a
//! [`Route`] (`--route heavy=arn:mapfleet:task:::thumbnail`) and runs those workers with
//! `--queues heavy`; every resource without a route lands in the default queue through the
//! alternate exchange, so adding a route never makes a step unroutable.
//!
//! All queues are durable **quorum** queues with an explicit `x-delivery-limit`: RabbitMQ 3.10
//! has no default limit, so without it a step that crashes every worker would loop forever.
//! Past the limit the broker dead-letters the message, body untouched, to `{p}.dead`.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// The short name of the queue that takes every resource without a [`Route`].
pub const DEFAULT_ROUTE: &str = "default";

/// Resources that get their own steps queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Short queue name: the queue is `{prefix}.steps.{queue}`.
    pub queue: String,
    /// Resource ARNs routed there.
    pub resources: Vec<String>,
}

impl std::str::FromStr for Route {
    type Err = String;

    /// `NAME=ARN[,ARN...]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (queue, resources) = s
            .split_once('=')
            .ok_or_else(|| format!("route {s:?} is not NAME=ARN[,ARN...]"))?;
        let queue = queue.trim().to_string();
        if queue.is_empty() || queue == DEFAULT_ROUTE || queue.contains(['.', ' ']) {
            return Err(format!(
                "route name {queue:?} must be non-empty, not {DEFAULT_ROUTE:?}, without dots or spaces"
            ));
        }
        let resources: Vec<String> = resources
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect();
        if resources.is_empty() {
            return Err(format!("route {queue:?} names no resource"));
        }
        Ok(Route { queue, resources })
    }
}

/// The fleet's broker topology under one name prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    delivery_limit: u32,
    routes: Vec<Route>,
}

impl Topology {
    /// `prefix` namespaces every name (tests use a unique one); `delivery_limit` is how many
    /// times a message may be delivered and returned before it is dead-lettered.
    pub fn new(prefix: impl Into<String>, delivery_limit: u32) -> Self {
        Self {
            prefix: prefix.into(),
            delivery_limit,
            routes: Vec::new(),
        }
    }

    pub fn with_routes(mut self, routes: impl IntoIterator<Item = Route>) -> Self {
        self.routes.extend(routes);
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Where steps are published, with the resource ARN as routing key.
    pub fn steps_exchange(&self) -> String {
        format!("{}.steps", self.prefix)
    }

    /// The alternate exchange of [`Self::steps_exchange`] (steps no route claimed).
    pub fn default_steps_exchange(&self) -> String {
        format!("{}.steps.{DEFAULT_ROUTE}", self.prefix)
    }

    /// The full name of the steps queue called `route` (`default` or a [`Route::queue`]).
    pub fn steps_queue(&self, route: &str) -> String {
        format!("{}.steps.{route}", self.prefix)
    }

    pub fn default_steps_queue(&self) -> String {
        self.steps_queue(DEFAULT_ROUTE)
    }

    /// Every steps queue: the default one, then one per route.
    pub fn steps_queues(&self) -> Vec<String> {
        std::iter::once(self.default_steps_queue())
            .chain(self.routes.iter().map(|r| self.steps_queue(&r.queue)))
            .collect()
    }

    /// The queue of the activity `name` (`arn:aws:states:R:A:activity:NAME`): bound to the
    /// steps exchange by the activity's ARN, so its steps land there, where `mapfleet serve`
    /// hands them out through GetActivityTask. Declared by CreateActivity
    /// ([`declare_activity`]), deleted by DeleteActivity.
    pub fn activity_queue(&self, name: &str) -> String {
        format!("{}.activity.{name}", self.prefix)
    }

    /// Outcomes are published to the default exchange with this queue's name as routing key.
    pub fn outcomes_queue(&self) -> String {
        format!("{}.outcomes", self.prefix)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// Messages past the delivery limit, or rejected without requeue (undecodable).
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    fn quorum_args(&self, dead_letter: bool) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        if dead_letter {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                long_string(&self.dead_letter_exchange()),
            );
        }
        args
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares every exchange, queue and binding of `topo`. Idempotent: every process may (and
/// should) call it at start-up. Redeclaring a queue with *different* arguments (say another
/// delivery limit) is refused by the broker with `PRECONDITION_FAILED`, which closes the
/// channel: change limits by using a new prefix or deleting the queues first. The whole
/// declaration is bounded by [`crate::amqp::REPLY_LIMIT`].
pub async fn declare(channel: &Channel, topo: &Topology) -> Result<(), lapin::Error> {
    crate::amqp::bounded(
        "the queue topology's declarations",
        declare_all(channel, topo),
    )
    .await
}

async fn declare_all(channel: &Channel, topo: &Topology) -> Result<(), lapin::Error> {
    let dlx = topo.dead_letter_exchange();
    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            topo.dead_letter_queue().into(),
            durable_queue(),
            topo.quorum_args(false),
        )
        .await?;
    channel
        .queue_bind(
            topo.dead_letter_queue().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let default_ex = topo.default_steps_exchange();
    channel
        .exchange_declare(
            default_ex.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    let mut steps_args = FieldTable::default();
    steps_args.insert("alternate-exchange".into(), long_string(&default_ex));
    channel
        .exchange_declare(
            topo.steps_exchange().into(),
            ExchangeKind::Direct,
            durable_exchange(),
            steps_args,
        )
        .await?;

    let default_q = topo.default_steps_queue();
    channel
        .queue_declare(
            default_q.as_str().into(),
            durable_queue(),
            topo.quorum_args(true),
        )
        .await?;
    channel
        .queue_bind(
            default_q.as_str().into(),
            default_ex.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for route in &topo.routes {
        let queue = topo.steps_queue(&route.queue);
        channel
            .queue_declare(
                queue.as_str().into(),
                durable_queue(),
                topo.quorum_args(true),
            )
            .await?;
        for resource in &route.resources {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topo.steps_exchange().into(),
                    ShortString::from(resource.as_str()),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }

    channel
        .queue_declare(
            topo.outcomes_queue().into(),
            durable_queue(),
            topo.quorum_args(true),
        )
        .await?;
    Ok(())
}

/// The name of an activity ARN (`arn:aws:states:REGION:ACCOUNT:activity:NAME`), or `None`
/// for any other resource. Activity steps travel one per message: a worker takes them one at
/// a time through GetActivityTask.
pub fn activity_name(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("arn:aws:states:")?;
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [_, _, "activity", name] if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// Declares the queue of the activity `arn` and binds it to the steps exchange under its
/// ARN (after [`declare`]). A quorum queue with the topology's delivery limit and
/// dead-lettering, as the steps queues: a step a GetActivityTask took and never settled
/// (the server died) comes back, and dead-letters at the limit. Idempotent.
pub async fn declare_activity(
    channel: &Channel,
    topo: &Topology,
    arn: &str,
) -> Result<(), lapin::Error> {
    let Some(name) = activity_name(arn) else {
        return Ok(());
    };
    let queue = topo.activity_queue(name);
    crate::amqp::bounded("the activity queue's declaration", async {
        channel
            .queue_declare(
                queue.as_str().into(),
                durable_queue(),
                topo.quorum_args(true),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                topo.steps_exchange().into(),
                ShortString::from(arn),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    })
    .await
}

/// Deletes the queue of the activity `name` (the steps still in it go with it: their
/// executions time them out, as AWS's do for a deleted activity).
pub async fn delete_activity(
    channel: &Channel,
    topo: &Topology,
    name: &str,
) -> Result<(), lapin::Error> {
    let queue = topo.activity_queue(name);
    crate::amqp::bounded(
        "the activity queue's deletion",
        channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
    )
    .await
    .map(|_| ())
}

/// Deletes everything [`declare`] made (tests clean up their unique prefix with it).
pub async fn delete(channel: &Channel, topo: &Topology) -> Result<(), lapin::Error> {
    let mut queues = topo.steps_queues();
    queues.push(topo.outcomes_queue());
    queues.push(topo.dead_letter_queue());
    for q in queues {
        channel
            .queue_delete(q.into(), QueueDeleteOptions::default())
            .await?;
    }
    for ex in [
        topo.steps_exchange(),
        topo.default_steps_exchange(),
        topo.dead_letter_exchange(),
    ] {
        channel
            .exchange_delete(ex.into(), ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

/// Why the broker dead-lettered a message, read from its `x-first-death-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetterInfo {
    /// `delivery_limit`, `rejected`, `expired`, …
    pub reason: Option<String>,
    /// The queue the message died in.
    pub queue: Option<String>,
}

impl DeadLetterInfo {
    pub fn from_headers(headers: Option<&FieldTable>) -> Self {
        let get = |name: &str| -> Option<String> {
            match headers?.inner().get(name)? {
                AMQPValue::LongString(s) => Some(s.to_string()),
                AMQPValue::ShortString(s) => Some(s.to_string()),
                _ => None,
            }
        };
        Self {
            reason: get("x-first-death-reason"),
            queue: get("x-first-death-queue"),
        }
    }
}

/// How many times the broker says this message was delivered before (quorum queues set
/// `x-delivery-count` on redelivery; 0 when absent).
pub fn delivery_count(headers: Option<&FieldTable>) -> u32 {
    let Some(value) = headers.and_then(|h| h.inner().get("x-delivery-count")) else {
        return 0;
    };
    match value {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).unwrap_or(u32::MAX),
        AMQPValue::LongInt(n) => u32::try_from(*n).unwrap_or(u32::MAX),
        AMQPValue::LongUInt(n) => *n,
        AMQPValue::ShortInt(n) => u32::try_from(*n).unwrap_or(0),
        AMQPValue::ShortUInt(n) => u32::from(*n),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed() {
        let t = Topology::new("t1", 3).with_routes([Route {
            queue: "heavy".into(),
            resources: vec!["arn:mapfleet:task:::thumbnail".into()],
        }]);
        assert_eq!(t.steps_exchange(), "t1.steps");
        assert_eq!(t.steps_queues(), vec!["t1.steps.default", "t1.steps.heavy"]);
        assert_eq!(t.outcomes_queue(), "t1.outcomes");
        assert_eq!(t.dead_letter_queue(), "t1.dead");
        let args = t.quorum_args(true);
        assert_eq!(
            args.inner().get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(3))
        );
    }

    #[test]
    fn activity_arns_name_their_queue() {
        let arn = "arn:aws:states:local:000000000000:activity:resize";
        assert_eq!(activity_name(arn), Some("resize"));
        assert_eq!(
            Topology::new("t1", 3).activity_queue("resize"),
            "t1.activity.resize"
        );
        for other in [
            "arn:mapfleet:task:::echo",
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:local:000000000000:stateMachine:x",
            "arn:aws:states:local:000000000000:activity:",
        ] {
            assert_eq!(activity_name(other), None, "{other}");
        }
    }

    #[test]
    fn routes_parse() {
        let r: Route = "heavy=arn:a, arn:b".parse().unwrap();
        assert_eq!(r.queue, "heavy");
        assert_eq!(r.resources, vec!["arn:a", "arn:b"]);
        assert!("default=arn:a".parse::<Route>().is_err());
        assert!("x=".parse::<Route>().is_err());
        assert!("nonsense".parse::<Route>().is_err());
    }

    #[test]
    fn delivery_count_reads_quorum_header() {
        let mut h = FieldTable::default();
        assert_eq!(delivery_count(Some(&h)), 0);
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        assert_eq!(delivery_count(Some(&h)), 2);
        assert_eq!(delivery_count(None), 0);
    }
}
