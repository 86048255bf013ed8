//! The validated form of a Distributed Map's own fields: `ItemReader` (where the items come
//! from) and `ResultWriter` (where the children's results go). Parsed by
//! `parse/distributed.rs`; the engine resolves their `Parameters` at run time
//! (`engine/run/distributed.rs`) into the requests the driver's object seam carries out.

use super::definition::{AnyTemplate, Dynamic};

/// `arn:aws:states:::s3:getObject`: items are the records of one object.
pub const GET_OBJECT: &str = "arn:aws:states:::s3:getObject";
/// `arn:aws:states:::s3:listObjectsV2`: items are the objects under a prefix.
pub const LIST_OBJECTS_V2: &str = "arn:aws:states:::s3:listObjectsV2";
/// `arn:aws:states:::s3:putObject`: the only ResultWriter resource.
pub const PUT_OBJECT: &str = "arn:aws:states:::s3:putObject";

/// AWS's largest `MaxItems` (100,000,000); 0 means no limit.
pub const MAX_ITEMS_LIMIT: u64 = 100_000_000;
/// AWS's largest `MaxConcurrency` of a Distributed Map, and its default when 0.
pub const DISTRIBUTED_MAX_CONCURRENCY: u64 = 10_000;

/// A Map's `ItemReader`.
#[derive(Debug, Clone)]
pub struct ItemReaderSpec {
    pub source: ReaderSource,
    /// `Parameters` (`Arguments` in JSONata): `Bucket` and `Key` (getObject) or `Bucket` and
    /// `Prefix` (listObjectsV2), with paths or expressions allowed; checked again once
    /// evaluated.
    pub parameters: AnyTemplate,
    /// `ReaderConfig.MaxItems(Path)`: read at most this many items (0: all).
    pub max_items: Option<Dynamic<u64>>,
}

/// What the reader reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderSource {
    /// `s3:getObject` with `ReaderConfig.InputType`.
    GetObject(ItemFormat),
    /// `s3:listObjectsV2`: one item per object (`Etag`, `Key`, `LastModified`, `Size`,
    /// `StorageClass`).
    ListObjects,
}

/// `ReaderConfig.InputType` of an `s3:getObject` reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemFormat {
    /// One JSON array; its elements are the items.
    Json,
    /// One JSON value per line (JSON Lines); blank lines are skipped.
    Jsonl,
    /// Comma-separated values: each row an object from header to field (all strings).
    Csv(CsvFormat),
    /// An S3 Inventory `manifest.json`: the items are the rows of the inventory files it
    /// names.
    Manifest,
}

/// How a CSV object is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvFormat {
    pub headers: CsvHeaders,
    /// `CSVDelimiter`: `COMMA` (default), `PIPE`, `SEMICOLON`, `SPACE` or `TAB`.
    pub delimiter: u8,
}

/// `CSVHeaderLocation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvHeaders {
    /// The first row names the columns.
    FirstRow,
    /// `CSVHeaders` names them; every row is data.
    Given(Vec<String>),
}

/// A Map's `ResultWriter`.
#[derive(Debug, Clone)]
pub struct ResultWriterSpec {
    /// `Parameters` (`Arguments` in JSONata: `Bucket`, `Prefix`): where the result files go.
    /// `None`: a `WriterConfig` alone, which shapes the results but exports nothing.
    pub destination: Option<AnyTemplate>,
    pub output_type: OutputType,
    pub transformation: Transformation,
}

/// `WriterConfig.OutputType`: the result files as a JSON array or as JSON Lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    Json,
    Jsonl,
}

/// `WriterConfig.Transformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transformation {
    /// Each child's full record (`ExecutionArn`, `Input`, `Output`, `Status`, dates, ...).
    None,
    /// Only the children's outputs, as they are.
    Compact,
    /// Only the children's outputs, a batch's output (an array) flattened into its items.
    Flatten,
}
