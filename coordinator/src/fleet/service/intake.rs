//! What comes into a coordinator: outcome messages, dead letters and due timers, each turned
//! into inbox events of their executions.

use super::*;

impl Coordinator {
    /// Consumes outcome messages (each one outcome or a worker's batch), applying up to
    /// [`OUTCOME_DELIVERIES_AT_ONCE`] messages concurrently; each is acked once its outcomes
    /// are applied and in their executions' inboxes.
    pub(super) async fn consume_outcomes(self: Arc<Self>) -> Result<(), Error> {
        let queue = self.topo.outcomes_queue();
        let (channel, mut consumer) =
            shared::amqp::consume(&self.amqp, &queue, &format!("{}-outcomes", self.id), 512)
                .await
                .doing(|| format!("consume queue {queue}"))?;
        let slots = Arc::new(Semaphore::new(OUTCOME_DELIVERIES_AT_ONCE));
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.doing(|| format!("consume queue {queue}"))?;
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let me = self.clone();
            let queue = queue.clone();
            tasks.spawn(async move {
                let _permit = permit;
                match decode_outcomes(&delivery.data) {
                    Ok(outcomes) => {
                        let published: Vec<Option<u64>> =
                            outcomes.iter().map(|o| o.timings.published_ms).collect();
                        for o in &outcomes {
                            me.batching.observe(
                                &o.resource,
                                o.timings.started_ms,
                                o.timings.finished_ms,
                            );
                        }
                        let outcomes = outcomes
                            .into_iter()
                            .map(|o| {
                                let result = match o.result {
                                    StepResult::Ok { output } => Ok(output),
                                    StepResult::Err { error, cause } => {
                                        Err(StatesError::new(error, cause))
                                    }
                                };
                                (o.id, result)
                            })
                            .collect();
                        me.deliver_all(outcomes).await?;
                        // Applied (or found to be duplicates) now: the step's whole trip.
                        let latency = &shared::metrics::get().fleet.step_latency;
                        for at in published {
                            shared::metrics::FleetMetrics::since_publish(latency, at);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "dropping an unreadable outcome message"),
                }
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .doing(|| format!("ack an outcome message from queue {queue}"))
            });
            while let Some(done) = tasks.try_join_next() {
                done.map_err(outcome_task_stopped)??;
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(outcome_task_stopped)??;
        }
        drop(channel);
        Err(Error::ConsumerCancelled { queue })
    }

    /// Applies an outcome exactly once (the `shared` script) and hands it to its execution.
    async fn deliver(&self, id: &StepId, result: Result<Value, StatesError>) -> Result<(), Error> {
        self.deliver_all(vec![(id.clone(), result)]).await
    }

    /// Applies outcomes exactly once and appends the applied ones to their executions'
    /// inboxes, both in one script per execution (`shared::inbox::apply_to_inbox`: one round
    /// trip for a worker's batch, and no window where an outcome is applied but not queued).
    async fn deliver_all(
        &self,
        outcomes: Vec<(StepId, Result<Value, StatesError>)>,
    ) -> Result<(), Error> {
        let texts: Vec<(String, String)> = outcomes
            .iter()
            .map(|(id, result)| crate::fleet::activities::outcome_texts(id, result))
            .collect();
        // By execution, in delivery order.
        let mut groups: Vec<(&str, Vec<Delivery<'_>>)> = Vec::new();
        for ((id, _), (outcome, entry)) in outcomes.iter().zip(&texts) {
            let d = Delivery {
                id,
                outcome,
                inbox_entry: entry,
            };
            match groups.iter_mut().find(|(arn, _)| *arn == id.execution) {
                Some((_, list)) => list.push(d),
                None => groups.push((id.execution.as_str(), vec![d])),
            }
        }
        let ttl = self.opts.ttl.as_secs();
        let ready = self.keys.ready();
        let mut any = false;
        for (arn, list) in &groups {
            let inbox = self.keys.inbox(arn);
            for chunk in list.chunks(shared::redis_schema::BATCH) {
                let applied = retrying("apply outcomes", || {
                    let mut conn = self.conn.clone();
                    let (inbox, ready) = (&inbox, &ready);
                    async move {
                        apply_to_inbox(&mut conn, &self.keys.shared, ttl, inbox, ready, chunk).await
                    }
                })
                .await
                .doing(|| format!("apply outcomes of execution {arn}"))?;
                // Acked once this returns: kept until Redis has surely persisted them.
                self.recovery.outcomes_applied(
                    chunk
                        .iter()
                        .zip(&applied)
                        .filter(|(_, a)| **a == Applied::Applied)
                        .map(|(d, _)| d),
                );
                any |= applied.contains(&Applied::Applied);
            }
        }
        if any {
            self.wake.notify_one();
        }
        Ok(())
    }

    pub(super) async fn consume_dead_letters(self: Arc<Self>) -> Result<(), Error> {
        let queue = self.topo.dead_letter_queue();
        let (channel, mut consumer) =
            shared::amqp::consume(&self.amqp, &queue, &format!("{}-dead", self.id), 16)
                .await
                .doing(|| format!("consume queue {queue}"))?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.doing(|| format!("consume queue {queue}"))?;
            // A batch is dead-lettered only if splitting it kept failing (see the worker's
            // consumer): each of its steps fails as it would alone.
            match decode_steps(&delivery.data) {
                Ok(steps) => {
                    let info = shared::topology::DeadLetterInfo::from_headers(
                        delivery.properties.headers().as_ref(),
                    );
                    for step in steps {
                        let detail = format!(
                            "by the broker: {}, queue {}",
                            info.reason.as_deref().unwrap_or("unknown reason"),
                            info.queue.as_deref().unwrap_or("unknown")
                        );
                        let error = StatesError::dead_lettered(
                            &step.resource,
                            &detail,
                            self.topo.delivery_limit(),
                        );
                        tracing::error!(execution = %step.id.execution, cursor = %step.id.cursor, "{}", error.cause);
                        shared::metrics::get().steps_dead_lettered.inc();
                        self.deliver(&step.id, Err(error)).await?;
                    }
                }
                Err(e) => tracing::error!(error = %e, "dropping an unreadable dead letter"),
            }
            delivery
                .ack(BasicAckOptions::default())
                .await
                .doing(|| format!("ack a dead letter from queue {queue}"))?;
        }
        drop(channel);
        Err(Error::ConsumerCancelled { queue })
    }

    pub(super) async fn fire_timers(self: Arc<Self>) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        loop {
            let now = Utc::now().timestamp_millis().max(0) as u64;
            match self
                .store
                .claim_due_timers(now, 256, Duration::from_secs(30))
                .await
            {
                Ok(due) if !due.is_empty() => {
                    for timer in due {
                        self.recovery
                            .timer_claimed(&timer.member, timer.lease_until_ms);
                        if let Some((arn, event)) = parse_timer(&timer.member) {
                            enqueue(&mut conn, &self.keys, &arn, &[event])
                                .await
                                .doing(|| {
                                    format!("queue timer {} of execution {arn}", timer.member)
                                })?;
                        }
                        self.store
                            .complete_timer(&timer)
                            .await
                            .doing(|| format!("complete timer {}", timer.member))?;
                    }
                    self.wake.notify_one();
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim timers, retrying"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An outcome task that panicked (or was cancelled) stops the consumer: its message stays
/// unacked, and the broker delivers it again.
fn outcome_task_stopped(source: tokio::task::JoinError) -> Error {
    Error::TaskStopped {
        task: "an outcome task".into(),
        source,
    }
}
