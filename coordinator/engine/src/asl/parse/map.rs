//! Building Map states: processors, selectors, concurrency, tolerance, batching, labels.

use serde_json::Value;

use super::{Builder, Loc, RawState};
use crate::asl::definition::*;
use crate::asl::distributed::DISTRIBUTED_MAX_CONCURRENCY;

impl Builder {
    pub(super) fn map(&mut self, raw: &RawState, loc: &Loc, ql: QueryLanguage) -> Option<MapSpec> {
        let (proc_field, processor) = match (raw.Iterator.as_ref(), raw.ItemProcessor.as_ref()) {
            (Some(_), Some(_)) => {
                self.err(loc, "Only one of 'Iterator' or 'ItemProcessor' may be set");
                return None;
            }
            (Some(p), None) => ("Iterator", p),
            (None, Some(p)) => ("ItemProcessor", p),
            (None, None) => {
                self.err(loc, "These fields are required: [ItemProcessor]");
                return None;
            }
        };
        let pl = loc.field(proc_field);
        let Some(pobj) = processor.as_object() else {
            self.err(&pl, format!("'{proc_field}' must be a JSON object"));
            return None;
        };
        let mut mode = ProcessorMode::Inline;
        let mut execution_type = None;
        for key in pobj.keys() {
            // AWS accepts ProcessorConfig under the legacy Iterator name too.
            let ok = matches!(
                key.as_str(),
                "StartAt" | "States" | "Comment" | "ProcessorConfig"
            );
            if !ok {
                self.err(
                    &pl.field(key),
                    format!("Field '{key}' is not supported in '{proc_field}'"),
                );
            }
        }
        if let Some(cfg) = pobj.get("ProcessorConfig") {
            let cl = pl.field("ProcessorConfig");
            match cfg.as_object() {
                Some(c) => {
                    for (k, v) in c {
                        match k.as_str() {
                            "Mode" => match v.as_str() {
                                Some("INLINE") => mode = ProcessorMode::Inline,
                                Some("DISTRIBUTED") => mode = ProcessorMode::Distributed,
                                _ => self.err(
                                    &cl.field("Mode"),
                                    "'Mode' must be 'INLINE' or 'DISTRIBUTED'",
                                ),
                            },
                            "ExecutionType" => match v.as_str() {
                                Some(t @ ("STANDARD" | "EXPRESS")) => {
                                    execution_type = Some(t.to_string())
                                }
                                _ => self.err(
                                    &cl.field("ExecutionType"),
                                    "'ExecutionType' must be 'STANDARD' or 'EXPRESS'",
                                ),
                            },
                            _ => self.err(
                                &cl.field(k),
                                format!("Field '{k}' is not supported in 'ProcessorConfig'"),
                            ),
                        }
                    }
                }
                None => self.err(&cl, "'ProcessorConfig' must be a JSON object"),
            }
        }
        if mode == ProcessorMode::Distributed && execution_type.is_none() {
            self.err(
                &pl.field("ProcessorConfig"),
                "A DISTRIBUTED processor needs an 'ExecutionType' (STANDARD or EXPRESS)",
            );
        }
        let processor = self.graph(pobj.get("StartAt"), pobj.get("States"), &pl, ql)?;
        let item_selector = match (raw.ItemSelector.as_ref(), raw.Parameters.as_ref()) {
            (Some(_), Some(_)) => {
                self.err(loc, "Only one of 'ItemSelector' or 'Parameters' may be set (Parameters is the legacy name of ItemSelector)");
                None
            }
            (Some(v), None) => self.template_field(Some(v), "ItemSelector", loc),
            (None, Some(v)) => self.template_field(Some(v), "Parameters", loc),
            (None, None) => None,
        };
        let jsonata = self.jsonata.then(|| {
            Box::new(MapJsonata {
                items: self.jtemplate_field(raw.Items.as_ref(), "Items", loc),
                item_selector: self.jtemplate_field(raw.ItemSelector.as_ref(), "ItemSelector", loc),
            })
        });
        let item_selector = if self.jsonata { None } else { item_selector };
        let items_path = match raw.ItemsPath.as_ref() {
            None => None,
            Some(v) => Some(self.path_string(v, "ItemsPath", loc)?),
        };
        // With an ItemReader the items are the reader's: AWS accepts an ItemsPath next to it
        // and leaves the items as read (recorded in the conformance cases), and so does the
        // engine (`run/distributed.rs` never looks at it).
        let max_concurrency = self
            .dynamic_u64(
                raw.MaxConcurrency.as_ref(),
                raw.MaxConcurrencyPath.as_ref(),
                "MaxConcurrency",
                loc,
                true,
            )?
            .unwrap_or(Dynamic::Literal(0));
        let tolerated_failure_count = self.dynamic_u64(
            raw.ToleratedFailureCount.as_ref(),
            raw.ToleratedFailureCountPath.as_ref(),
            "ToleratedFailureCount",
            loc,
            true,
        )?;
        let tolerated_failure_percentage = match (
            raw.ToleratedFailurePercentage.as_ref(),
            raw.ToleratedFailurePercentagePath.as_ref(),
        ) {
            (Some(_), Some(_)) => {
                self.err(loc, "Only one of 'ToleratedFailurePercentage' or 'ToleratedFailurePercentagePath' may be set");
                return None;
            }
            (Some(Value::String(s)), None)
                if self.jsonata && crate::asl::jsonata::expression_text(s).is_some() =>
            {
                let text = crate::asl::jsonata::expression_text(s).unwrap_or_default();
                Some(Dynamic::Expr(self.jexpr(
                    text,
                    "ToleratedFailurePercentage",
                    loc,
                )?))
            }
            (Some(v), None) => match v.as_f64().filter(|p| (0.0..=100.0).contains(p)) {
                Some(p) => Some(Dynamic::Literal(p)),
                None => {
                    self.err(
                        &loc.field("ToleratedFailurePercentage"),
                        "'ToleratedFailurePercentage' must be a number between 0 and 100",
                    );
                    return None;
                }
            },
            (None, Some(p)) => Some(Dynamic::Path(self.path_string(
                p,
                "ToleratedFailurePercentagePath",
                loc,
            )?)),
            (None, None) => None,
        };
        let item_batcher = match raw.ItemBatcher.as_ref() {
            None => None,
            Some(v) => Some(self.item_batcher(v, &loc.field("ItemBatcher"))?),
        };
        // A Distributed Map's own fields (parse/distributed.rs).
        for (field, value) in [
            ("ItemReader", &raw.ItemReader),
            ("ResultWriter", &raw.ResultWriter),
        ] {
            if value.is_some() && mode != ProcessorMode::Distributed {
                self.err(
                    &loc.field(field),
                    format!("'{field}' is only supported by a DISTRIBUTED Map (ItemProcessor.ProcessorConfig.Mode)"),
                );
            }
        }
        let item_reader = match raw.ItemReader.as_ref() {
            None => None,
            Some(v) => self.item_reader(v, &loc.field("ItemReader")),
        };
        let result_writer = match raw.ResultWriter.as_ref() {
            None => None,
            Some(v) => self.result_writer(v, &loc.field("ResultWriter")),
        };
        if mode == ProcessorMode::Distributed
            && let Dynamic::Literal(n) = max_concurrency
            && n > DISTRIBUTED_MAX_CONCURRENCY
        {
            self.err(
                &loc.field("MaxConcurrency"),
                format!("'MaxConcurrency' of a DISTRIBUTED Map cannot exceed {DISTRIBUTED_MAX_CONCURRENCY}"),
            );
        }
        let label = match raw.Label.as_ref() {
            None => None,
            Some(Value::String(l)) => {
                if l.chars().count() > 40 {
                    self.err(&loc.field("Label"), "Label cannot exceed 40 characters");
                }
                if let Some(bad) = l.chars().find(|c| {
                    c.is_control()
                        || c.is_whitespace()
                        || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(*c)
                        || ('\u{7f}'..='\u{9f}').contains(c)
                }) {
                    self.err(
                        &loc.field("Label"),
                        format!("Label contains invalid character: {bad:?}"),
                    );
                }
                if !self.labels.insert(l.clone()) {
                    self.err(
                        &loc.field("Label"),
                        format!("Label '{l}' is not unique in the definition"),
                    );
                }
                Some(l.clone())
            }
            Some(_) => {
                self.err(&loc.field("Label"), "'Label' must be a string");
                None
            }
        };
        Some(MapSpec {
            items_path,
            item_selector,
            processor,
            mode,
            execution_type,
            max_concurrency,
            tolerated_failure_percentage,
            tolerated_failure_count,
            item_batcher,
            item_reader,
            result_writer,
            label,
            jsonata,
        })
    }

    fn item_batcher(&mut self, v: &Value, loc: &Loc) -> Option<ItemBatcher> {
        let Some(obj) = v.as_object() else {
            self.err(loc, "'ItemBatcher' must be a JSON object");
            return None;
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "MaxItemsPerBatch"
                    | "MaxItemsPerBatchPath"
                    | "MaxInputBytesPerBatch"
                    | "MaxInputBytesPerBatchPath"
                    | "BatchInput"
            ) {
                self.err(
                    &loc.field(key),
                    format!("Field '{key}' is not supported in 'ItemBatcher'"),
                );
            }
        }
        let max_items_per_batch = self.dynamic_u64(
            obj.get("MaxItemsPerBatch"),
            obj.get("MaxItemsPerBatchPath"),
            "MaxItemsPerBatch",
            loc,
            false,
        )?;
        let max_input_bytes_per_batch = self.dynamic_u64(
            obj.get("MaxInputBytesPerBatch"),
            obj.get("MaxInputBytesPerBatchPath"),
            "MaxInputBytesPerBatch",
            loc,
            false,
        )?;
        if max_items_per_batch.is_none() && max_input_bytes_per_batch.is_none() {
            self.err(loc, "'ItemBatcher' needs 'MaxItemsPerBatch' or 'MaxInputBytesPerBatch' (or their Path forms)");
        }
        let batch_input = if self.jsonata {
            self.jtemplate_field(obj.get("BatchInput"), "BatchInput", loc)
                .map(AnyTemplate::Jsonata)
        } else {
            self.template_field(obj.get("BatchInput"), "BatchInput", loc)
                .map(AnyTemplate::Path)
        };
        Some(ItemBatcher {
            max_items_per_batch,
            max_input_bytes_per_batch,
            batch_input,
        })
    }
}
