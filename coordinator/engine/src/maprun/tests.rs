//! Map runs over an in-memory object store: reading in chunks, counting, batching, the
//! result files and manifest, and the errors that name the object and line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::asl::distributed::*;
use crate::asl::error::names;
use crate::asl::template::Template;
use crate::engine::ExecutionInfo;

/// Buckets in memory; counts reads so tests can see the chunking.
#[derive(Default)]
struct Memory {
    objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    buckets: Vec<String>,
    reads: Mutex<usize>,
}

impl Memory {
    fn with(buckets: &[&str]) -> Memory {
        Memory {
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            ..Default::default()
        }
    }

    fn put_text(&self, bucket: &str, key: &str, text: &str) {
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.into(), key.into()), text.as_bytes().to_vec());
    }

    fn get(&self, bucket: &str, key: &str) -> Option<Value> {
        let objects = self.objects.lock().unwrap();
        let bytes = objects.get(&(bucket.to_string(), key.to_string()))?;
        Some(serde_json::from_slice(bytes).unwrap())
    }

    fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .map(|(b, k)| format!("{b}/{k}"))
            .collect()
    }
}

#[async_trait::async_trait]
impl Buckets for Memory {
    async fn read(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BucketError> {
        *self.reads.lock().unwrap() += 1;
        if !self.buckets.iter().any(|b| b == bucket) {
            return Err(BucketError::NoSuchBucket(bucket.into()));
        }
        let objects = self.objects.lock().unwrap();
        let bytes =
            objects
                .get(&(bucket.to_string(), key.to_string()))
                .ok_or(BucketError::NoSuchKey {
                    bucket: bucket.into(),
                    key: key.into(),
                })?;
        let start = (offset as usize).min(bytes.len());
        let end = (offset.saturating_add(len) as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectSummary>, BucketError> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((b, k), _)| {
                b == bucket && k.starts_with(prefix) && start_after.is_none_or(|a| k.as_str() > a)
            })
            .take(max)
            .map(|((_, k), v)| ObjectSummary {
                key: k.clone(),
                size: v.len() as u64,
                etag: "e".into(),
                last_modified: 7,
            })
            .collect())
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), BucketError> {
        if !self.buckets.iter().any(|b| b == bucket) {
            return Err(BucketError::NoSuchBucket(bucket.into()));
        }
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.into(), key.into()), bytes);
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, BucketError> {
        Ok(self.buckets.iter().any(|b| b == bucket))
    }
}

/// Runs a future whose IO is all in memory (never pending).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn plan(source: ReaderSource, key: &str, writer: Option<WriteRequest>) -> MapRunPlan {
    MapRunPlan {
        map_run_arn: "arn:aws:states:local:000000000000:mapRun:M/Fan:run-1".into(),
        limits: Default::default(),
        reader: ReadRequest {
            source,
            bucket: "in".into(),
            key: key.into(),
            prefix: String::new(),
            max_items: 0,
        },
        writer,
        batch: BatchPlan {
            selector: None,
            effective_input: json!({"run": "r1"}),
            vars: Default::default(),
            info: Arc::new(ExecutionInfo::new("M", "e1", json!({}), t0())),
            state_name: "Fan".into(),
            entered_at: t0(),
            with_execution_input: false,
            seed: 1,
            max_items_per_batch: None,
            max_bytes_per_batch: None,
            batch_input: None,
        },
        redrive_count: 0,
    }
}

fn jsonl_lines(n: usize) -> String {
    (0..n).map(|i| format!("{{\"n\": {i}}}\n")).collect()
}

/// Every child input of a run, asked for `step` at a time.
fn all_inputs(store: &Memory, plan: MapRunPlan, step: usize) -> Result<Vec<Value>, String> {
    let (mut run, total) = block_on(OpenRun::open(store, plan)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while out.len() < total {
        let to = (out.len() + step).min(total);
        let t = t0();
        out.extend(block_on(run.inputs(store, out.len(), to, t)).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[test]
fn a_large_jsonl_object_is_read_in_chunks() {
    let store = Memory::with(&["in"]);
    // About 2.3 MB: three reads of 1 MiB each per pass.
    store.put_text("in", "items.jsonl", &jsonl_lines(200_000));
    let p = plan(
        ReaderSource::GetObject(ItemFormat::Jsonl),
        "items.jsonl",
        None,
    );
    let inputs = all_inputs(&store, p, 1000).unwrap();
    assert_eq!(inputs.len(), 200_000);
    assert_eq!(inputs[199_999], json!({"n": 199_999}));
    let reads = *store.reads.lock().unwrap();
    assert!((6..=8).contains(&reads), "{reads} reads for two passes");
}

#[test]
fn max_items_selector_and_batches() {
    let store = Memory::with(&["in"]);
    store.put_text(
        "in",
        "rows.csv",
        "user,photo\nann,a.jpg\nbob,b.jpg\ncy,c.jpg\ndi,d.jpg\n",
    );
    let mut p = plan(
        ReaderSource::GetObject(ItemFormat::Csv(CsvFormat {
            headers: CsvHeaders::FirstRow,
            delimiter: b',',
        })),
        "rows.csv",
        None,
    );
    p.reader.max_items = 3;
    p.batch.selector = Some(
        Template::parse(&json!({"who.$": "$$.Map.Item.Value.user", "i.$": "$$.Map.Item.Index", "run.$": "$.run"}))
            .unwrap(),
    );
    p.batch.max_items_per_batch = Some(2);
    p.batch.batch_input = Some(json!({"b": 1}));
    assert_eq!(
        all_inputs(&store, p, 1).unwrap(),
        vec![
            json!({"BatchInput": {"b": 1}, "Items": [{"who": "ann", "i": 0, "run": "r1"}, {"who": "bob", "i": 1, "run": "r1"}]}),
            json!({"BatchInput": {"b": 1}, "Items": [{"who": "cy", "i": 2, "run": "r1"}]}),
        ]
    );
}

#[test]
fn batches_by_bytes_and_an_item_too_large() {
    let store = Memory::with(&["in"]);
    store.put_text(
        "in",
        "a.json",
        r#"["aaaa", "bbbb", "cccc", "dddddddddddddddddddddddd"]"#,
    );
    let mut p = plan(ReaderSource::GetObject(ItemFormat::Json), "a.json", None);
    p.batch.max_bytes_per_batch = Some(13);
    let e = all_inputs(&store, p.clone(), 10).unwrap_err();
    assert!(
        e.contains(names::ITEM_READER_FAILED) && e.contains("Item 3 of s3://in/a.json is 26 bytes, over the ItemBatcher's MaxInputBytesPerBatch (13)"),
        "{e}"
    );
    p.reader.max_items = 3;
    assert_eq!(
        all_inputs(&store, p, 10).unwrap(),
        vec![
            json!({"Items": ["aaaa", "bbbb"]}),
            json!({"Items": ["cccc"]})
        ]
    );
}

#[test]
fn listings_are_items() {
    let store = Memory::with(&["in"]);
    for i in 0..1500 {
        store.put_text("in", &format!("photos/{i:04}.jpg"), "x");
    }
    store.put_text("in", "other/x.jpg", "x");
    let mut p = plan(ReaderSource::ListObjects, "", None);
    p.reader.prefix = "photos/".into();
    let inputs = all_inputs(&store, p, 700).unwrap();
    assert_eq!(inputs.len(), 1500);
    assert_eq!(
        inputs[1499],
        json!({"Etag": "\"e\"", "Key": "photos/1499.jpg", "LastModified": 7, "Size": 1, "StorageClass": "STANDARD"})
    );
}

/// `bytes` gzip'd.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// An S3 Inventory manifest (as S3 writes it) over the data files `keys`.
fn inventory_manifest(keys: &[&str]) -> String {
    let files: Vec<Value> = keys
        .iter()
        .map(|k| json!({"key": k, "size": 1, "MD5checksum": "x"}))
        .collect();
    json!({
        "sourceBucket": "photos",
        "destinationBucket": "arn:aws:s3:::inv",
        "version": "2016-11-30",
        "creationTimestamp": "1514944800000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
        "files": files
    })
    .to_string()
}

#[test]
fn manifests_stream_their_data_files_gzip_or_not() {
    let store = Memory::with(&["in", "inv"]);
    // Two gzip'd data files (the first over several reads and inflate steps) and a plain one.
    // An entity tag per object, random enough that the first file stays over 1 MiB gzip'd.
    let etag = |i: u64| {
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^ (z >> 31)
        };
        format!("{:016x}{:016x}", mix(2 * i), mix(2 * i + 1))
    };
    let rows = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| {
                format!(
                    "\"photos\",\"p/{i:06}.jpg\",\"{i}\",\"2026-01-01T00:00:00.000Z\",\"{}\"\n",
                    etag(i as u64)
                )
            })
            .collect()
    };
    let big = rows(0, 60_000);
    assert!(gzip(big.as_bytes()).len() > super::reader::READ_BYTES as usize);
    store
        .objects
        .lock()
        .unwrap()
        .insert(("inv".into(), "data/a.csv.gz".into()), gzip(big.as_bytes()));
    store.objects.lock().unwrap().insert(
        ("inv".into(), "data/b.csv.gz".into()),
        gzip(rows(60_000, 60_010).as_bytes()),
    );
    store.put_text("inv", "data/c.csv", &rows(60_010, 60_012));
    store.put_text(
        "in",
        "inventory/manifest.json",
        &inventory_manifest(&["data/a.csv.gz", "data/b.csv.gz", "data/c.csv"]),
    );
    let p = plan(
        ReaderSource::GetObject(ItemFormat::Manifest),
        "inventory/manifest.json",
        None,
    );
    let inputs = all_inputs(&store, p.clone(), 5000).unwrap();
    assert_eq!(inputs.len(), 60_012);
    assert_eq!(
        inputs[0],
        json!({"Bucket": "photos", "Key": "p/000000.jpg", "Size": "0", "LastModifiedDate": "2026-01-01T00:00:00.000Z", "ETag": etag(0)})
    );
    for (i, item) in inputs.iter().enumerate() {
        assert_eq!(item["Key"], json!(format!("p/{i:06}.jpg")), "item {i}");
    }
    // MaxItems stops in the middle of a file.
    let mut limited = p;
    limited.reader.max_items = 60_005;
    let inputs = all_inputs(&store, limited, 7).unwrap();
    assert_eq!(inputs.len(), 60_005);
    assert_eq!(inputs[60_004]["Key"], json!("p/060004.jpg"));
}

#[test]
fn manifest_errors_name_the_file_and_line() {
    let store = Memory::with(&["in", "inv"]);
    let manifest = |keys: &[&str]| inventory_manifest(keys);
    store.put_text("in", "m/ok.json", &manifest(&["d/1.csv.gz", "d/2.csv.gz"]));
    store.objects.lock().unwrap().insert(
        ("inv".into(), "d/1.csv.gz".into()),
        gzip(b"\"photos\",\"a\",\"1\",\"t\",\"e\"\n"),
    );
    store.objects.lock().unwrap().insert(
        ("inv".into(), "d/2.csv.gz".into()),
        gzip(b"\"photos\",\"b\",\"1\",\"t\",\"e\"\n\"photos\",\"c\"x,\"1\",\"t\",\"e\"\n"),
    );
    let mut truncated = gzip(b"\"photos\",\"a\",\"1\",\"t\",\"e\"\n");
    truncated.truncate(truncated.len() - 6);
    store
        .objects
        .lock()
        .unwrap()
        .insert(("inv".into(), "d/cut.csv.gz".into()), truncated);
    store.put_text("in", "m/cut.json", &manifest(&["d/cut.csv.gz"]));
    store.put_text(
        "in",
        "m/gone.json",
        &manifest(&["d/1.csv.gz", "d/gone.csv.gz"]),
    );
    store.put_text(
        "in",
        "m/orc.json",
        &manifest(&["d/1.csv.gz"]).replace("\"CSV\"", "\"ORC\""),
    );
    store.put_text(
        "in",
        "m/nofiles.json",
        r#"{"fileFormat": "CSV", "fileSchema": "Bucket, Key"}"#,
    );
    store.put_text("in", "m/notjson.json", "fileFormat: CSV");
    let at = |key: &str| {
        let p = plan(ReaderSource::GetObject(ItemFormat::Manifest), key, None);
        all_inputs(&store, p, 10)
    };
    assert_eq!(
        at("m/ok.json").unwrap_err(),
        "States.ItemReaderFailed: The ItemReader could not read s3://inv/d/2.csv.gz: line 2: text after a quoted field's closing quote"
    );
    for (key, expected) in [
        (
            "m/cut.json",
            "could not read s3://inv/d/cut.csv.gz: not valid gzip data",
        ),
        (
            "m/gone.json",
            "could not read s3://in/m/gone.json: The specified key does not exist: inv/d/gone.csv.gz",
        ),
        (
            "m/orc.json",
            "could not read s3://in/m/orc.json: the manifest's fileFormat is ORC, but only CSV inventories can be read",
        ),
        (
            "m/nofiles.json",
            "could not read s3://in/m/nofiles.json: the manifest has no 'files'",
        ),
        (
            "m/notjson.json",
            "could not read s3://in/m/notjson.json: the manifest is not JSON",
        ),
    ] {
        let e = at(key).unwrap_err();
        assert!(e.contains(expected), "{key}: {e}\nexpected: {expected}");
    }
}

#[test]
fn reader_errors_name_the_object_and_line() {
    let store = Memory::with(&["in"]);
    store.put_text("in", "bad.jsonl", "{\"a\": 1}\n{\"a\": \n{\"a\": 3}\n");
    let jsonl = ReaderSource::GetObject(ItemFormat::Jsonl);
    for (p, expected) in [
        (
            plan(jsonl.clone(), "bad.jsonl", None),
            "States.ItemReaderFailed: The ItemReader could not read s3://in/bad.jsonl: line 2: not a JSON value",
        ),
        (
            plan(jsonl.clone(), "missing.jsonl", None),
            "States.ItemReaderFailed: The ItemReader could not read s3://in/missing.jsonl: The specified key does not exist: in/missing.jsonl",
        ),
        (
            {
                let mut p = plan(jsonl.clone(), "k", None);
                p.reader.bucket = "nope".into();
                p
            },
            "The specified bucket does not exist: nope",
        ),
    ] {
        let e = all_inputs(&store, p, 10).unwrap_err();
        assert!(e.contains(expected), "{e}\nexpected: {expected}");
    }
    // A missing ResultWriter bucket fails the run before anything is read.
    store.put_text("in", "ok.jsonl", "1\n2\n");
    *store.reads.lock().unwrap() = 0;
    let p = plan(
        jsonl,
        "ok.jsonl",
        Some(WriteRequest {
            bucket: "no-such-bucket".into(),
            prefix: "out".into(),
            output_type: OutputType::Json,
            transformation: Transformation::None,
        }),
    );
    let e = all_inputs(&store, p, 10).unwrap_err();
    assert!(
        e.contains("States.ResultWriterFailed")
            && e.contains("the bucket no-such-bucket does not exist"),
        "{e}"
    );
    assert_eq!(*store.reads.lock().unwrap(), 0);
}

#[test]
fn result_files_and_manifest_as_aws_writes_them() {
    let store = Memory::with(&["in", "out"]);
    store.put_text("in", "items.jsonl", &jsonl_lines(3));
    let writer = WriteRequest {
        bucket: "out".into(),
        prefix: "results".into(),
        output_type: OutputType::Json,
        transformation: Transformation::None,
    };
    let p = plan(
        ReaderSource::GetObject(ItemFormat::Jsonl),
        "items.jsonl",
        Some(writer),
    );
    let (mut run, total) = block_on(OpenRun::open(&store, p.clone())).unwrap();
    assert_eq!(total, 3);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let t1 = t0 + chrono::Duration::seconds(2);
    let inputs = block_on(run.inputs(&store, 0, 3, t0)).unwrap();
    for (i, input) in inputs.into_iter().enumerate() {
        let result = if i == 1 {
            Err(crate::asl::error::StatesError::new("Boom", "item 1"))
        } else {
            Ok(json!({"out": input}))
        };
        block_on(run.ended(&store, i, &result, t1));
    }
    let summary = block_on(run.finish(&store)).unwrap().unwrap();
    assert_eq!(
        summary,
        json!({
            "MapRunArn": p.map_run_arn,
            "ResultWriterDetails": {"Bucket": "out", "Key": "results/run-1/manifest.json"}
        })
    );
    assert_eq!(
        store.get("out", "results/run-1/manifest.json").unwrap(),
        json!({
            "DestinationBucket": "out",
            "MapRunArn": p.map_run_arn,
            "ResultFiles": {
                "FAILED": [{"Key": "results/run-1/FAILED_0.json", "Size": store.objects.lock().unwrap()[&("out".to_string(), "results/run-1/FAILED_0.json".to_string())].len()}],
                "PENDING": [],
                "SUCCEEDED": [{"Key": "results/run-1/SUCCEEDED_0.json", "Size": store.objects.lock().unwrap()[&("out".to_string(), "results/run-1/SUCCEEDED_0.json".to_string())].len()}],
            }
        })
    );
    let succeeded = store.get("out", "results/run-1/SUCCEEDED_0.json").unwrap();
    let records = succeeded.as_array().unwrap();
    assert_eq!(records.len(), 2);
    let (arn, name) = p.child_execution(2);
    assert_eq!(records[1]["ExecutionArn"], json!(arn));
    assert!(
        arn.starts_with("arn:aws:states:local:000000000000:execution:M/Fan:"),
        "{arn}"
    );
    assert_eq!(records[1]["Name"], json!(name));
    assert_eq!(records[1]["Input"], json!("{\"n\":2}"));
    assert_eq!(records[1]["Output"], json!("{\"out\":{\"n\":2}}"));
    assert_eq!(records[1]["Status"], json!("SUCCEEDED"));
    assert_eq!(records[1]["StartDate"], json!("2026-01-02T03:04:05.000Z"));
    assert_eq!(records[1]["StopDate"], json!("2026-01-02T03:04:07.000Z"));
    let failed = store.get("out", "results/run-1/FAILED_0.json").unwrap();
    assert_eq!(failed[0]["Status"], json!("FAILED"));
    assert_eq!(failed[0]["Error"], json!("Boom"));
    assert_eq!(failed[0]["Cause"], json!("item 1"));
    assert!(failed[0].get("Output").is_none());
    assert_eq!(store.keys().len(), 4);
}

#[test]
fn result_files_roll_over_and_jsonl_compact() {
    let store = Memory::with(&["in", "out"]);
    // 10,000 items of 1 kB: the results pass 4 MiB twice.
    let n = 10_000;
    let pad = "x".repeat(1000);
    let text: String = (0..n)
        .map(|i| format!("{{\"n\": {i}, \"pad\": \"{pad}\"}}\n"))
        .collect();
    store.put_text("in", "items.jsonl", &text);
    let writer = WriteRequest {
        bucket: "out".into(),
        prefix: String::new(),
        output_type: OutputType::Jsonl,
        transformation: Transformation::Compact,
    };
    let p = plan(
        ReaderSource::GetObject(ItemFormat::Jsonl),
        "items.jsonl",
        Some(writer),
    );
    let (mut run, total) = block_on(OpenRun::open(&store, p)).unwrap();
    let t = t0();
    let mut from = 0;
    while from < total {
        let inputs = block_on(run.inputs(&store, from, (from + 5000).min(total), t)).unwrap();
        for (i, input) in inputs.into_iter().enumerate() {
            block_on(run.ended(&store, from + i, &Ok(input), t));
        }
        from += 5000;
    }
    let summary = block_on(run.finish(&store)).unwrap().unwrap();
    let key = summary["ResultWriterDetails"]["Key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(key, "run-1/manifest.json");
    let manifest = store.get("out", &key).unwrap();
    let files = manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{manifest}");
    let mut seen = 0;
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f["Key"], json!(format!("run-1/SUCCEEDED_{i}.jsonl")));
        let objects = store.objects.lock().unwrap();
        let bytes = &objects[&("out".to_string(), f["Key"].as_str().unwrap().to_string())];
        assert_eq!(f["Size"], json!(bytes.len()));
        for line in bytes.split(|b| *b == b'\n') {
            let v: Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["n"], json!(seen));
            seen += 1;
        }
    }
    assert_eq!(seen, n);
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}
