//! [`ItemStream`]: one `ItemReader`'s items, read forward a chunk at a time.

use std::collections::VecDeque;
use std::io::Write;

use serde_json::{Value, json};

use super::decode::{DecodeError, Decoded, Decoder, json_array};
use super::{BucketError, Buckets, ReadRequest};
use crate::asl::distributed::{CsvFormat, CsvHeaders, ItemFormat, ReaderSource};

/// Bytes asked for per read of a line-oriented object.
pub const READ_BYTES: u64 = 1 << 20;
/// The largest object read as `InputType: JSON` (parsed whole, unlike JSONL and CSV).
pub const JSON_MAX_BYTES: u64 = 64 << 20;
/// Objects asked for per page of a listing.
const LIST_PAGE: usize = 1000;
/// The longest record (a line, or a CSV row with its quoted line ends).
const MAX_RECORD_BYTES: usize = 16 << 20;
/// Compressed bytes handed to the gzip decoder at a time, so that what one step inflates
/// stays small (deflate inflates at most about 1,000-fold: 16 MiB).
const GUNZIP_STEP: usize = 16 << 10;

/// Why the items could not be read: the caller names the state and makes it
/// `States.ItemReaderFailed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemReadError {
    #[error("{0}")]
    Store(#[from] BucketError),
    #[error("s3://{bucket}/{key}: {error}")]
    Decode {
        bucket: String,
        key: String,
        error: DecodeError,
    },
}

/// A forward-only reader of one `ItemReader`'s items: `MaxItems` applied, nothing kept but
/// the current read and what is decoded from it.
pub struct ItemStream {
    req: ReadRequest,
    decoder: Option<Decoder>,
    /// The object the line decoder reads (bucket, key): the reader's own, or the data file
    /// of a manifest being read.
    object: (String, String),
    /// The bytes read and not yet decompressed (a gzip'd data file), from `raw_pos`.
    raw: Vec<u8>,
    raw_pos: usize,
    raw_eof: bool,
    /// Set when the object read starts with gzip's magic bytes (a manifest's data files).
    gunzip: Option<flate2::write::MultiGzDecoder<Vec<u8>>>,
    /// An S3 Inventory manifest, once read: its data files still to read.
    manifest: Option<Manifest>,
    buf: Vec<u8>,
    /// Where the undecoded bytes of `buf` start (the buffer is compacted only before a
    /// read, so decoding a record costs no copy of the rest).
    pos: usize,
    /// Where the next read starts.
    offset: u64,
    eof: bool,
    /// Items decoded ahead (a JSON array, a listing page).
    ready: VecDeque<Value>,
    /// The last key listed (listObjectsV2).
    listed_after: Option<String>,
    /// Items handed out so far.
    produced: u64,
}

impl std::fmt::Debug for ItemStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemStream")
            .field("req", &self.req)
            .field("object", &self.object)
            .field("offset", &self.offset)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

/// What an S3 Inventory `manifest.json` says: where its data files are, their columns, and
/// the files not read yet.
#[derive(Debug)]
struct Manifest {
    bucket: String,
    columns: Vec<String>,
    files: VecDeque<String>,
}

impl ItemStream {
    pub fn new(req: ReadRequest) -> ItemStream {
        let decoder = match &req.source {
            ReaderSource::GetObject(format) => Decoder::new(format),
            ReaderSource::ListObjects => None,
        };
        ItemStream {
            object: (req.bucket.clone(), req.key.clone()),
            req,
            decoder,
            raw: Vec::new(),
            raw_pos: 0,
            raw_eof: false,
            gunzip: None,
            manifest: None,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
            eof: false,
            ready: VecDeque::new(),
            listed_after: None,
            produced: 0,
        }
    }

    /// Items handed out so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    fn exhausted(&self) -> bool {
        self.req.max_items > 0 && self.produced >= self.req.max_items
    }

    /// Up to `max` next items; none when the reader is done.
    pub async fn next_chunk(
        &mut self,
        store: &dyn Buckets,
        max: usize,
    ) -> Result<Vec<Value>, ItemReadError> {
        let mut out = Vec::new();
        while out.len() < max && !self.exhausted() {
            match self.next(store).await? {
                Some(v) => {
                    self.produced += 1;
                    out.push(v);
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn next(&mut self, store: &dyn Buckets) -> Result<Option<Value>, ItemReadError> {
        if let Some(v) = self.ready.pop_front() {
            return Ok(Some(v));
        }
        let format = match &self.req.source {
            ReaderSource::ListObjects => return self.next_listed(store).await,
            ReaderSource::GetObject(f) => f.clone(),
        };
        match format {
            ItemFormat::Json => {
                if !self.eof {
                    let bytes = self.read_whole(store).await?;
                    self.ready = json_array(&bytes)
                        .map_err(|error| self.decode_error(error))?
                        .into();
                }
                Ok(self.ready.pop_front())
            }
            ItemFormat::Manifest => self.next_in_manifest(store).await,
            ItemFormat::Jsonl | ItemFormat::Csv(_) => self.next_record(store).await,
        }
    }

    fn decode_error(&self, error: DecodeError) -> ItemReadError {
        ItemReadError::Decode {
            bucket: self.object.0.clone(),
            key: self.object.1.clone(),
            error,
        }
    }

    /// The next row of an S3 Inventory's data files: the manifest is read (whole) first,
    /// then each data file it lists, in order, streamed as a CSV with the manifest's
    /// columns (gunzipped as it is read when it is gzip'd).
    async fn next_in_manifest(
        &mut self,
        store: &dyn Buckets,
    ) -> Result<Option<Value>, ItemReadError> {
        loop {
            if self.manifest.is_none() {
                let bytes = self.read_whole(store).await?;
                let manifest =
                    parse_manifest(&bytes, &self.req.bucket).map_err(|e| self.decode_error(e))?;
                self.manifest = Some(manifest);
                self.decoder = None;
            }
            if self.decoder.is_some() {
                if let Some(item) = self.next_record(store).await? {
                    return Ok(Some(item));
                }
                self.decoder = None;
            }
            let Some(m) = self.manifest.as_mut() else {
                return Ok(None);
            };
            let Some(key) = m.files.pop_front() else {
                return Ok(None);
            };
            self.decoder = Decoder::new(&ItemFormat::Csv(CsvFormat {
                headers: CsvHeaders::Given(m.columns.clone()),
                delimiter: b',',
            }));
            self.object = (m.bucket.clone(), key);
            self.buf = Vec::new();
            self.pos = 0;
            self.offset = 0;
            self.eof = false;
            self.raw = Vec::new();
            self.raw_pos = 0;
            self.raw_eof = false;
            self.gunzip = None;
        }
    }

    /// Reads on into `buf`: the next bytes of the object, inflated first when it is gzip'd.
    async fn fill(&mut self, store: &dyn Buckets) -> Result<(), ItemReadError> {
        if self.raw_pos == self.raw.len() && !self.raw_eof {
            let more = store
                .read(&self.object.0, &self.object.1, self.offset, READ_BYTES)
                .await?;
            if self.offset == 0 && self.manifest.is_some() && more.starts_with(&[0x1f, 0x8b]) {
                self.gunzip = Some(flate2::write::MultiGzDecoder::new(Vec::new()));
            }
            self.offset += more.len() as u64;
            self.raw_eof = (more.len() as u64) < READ_BYTES;
            self.raw = more;
            self.raw_pos = 0;
        }
        let Some(gz) = self.gunzip.as_mut() else {
            self.buf.extend_from_slice(&self.raw[self.raw_pos..]);
            self.raw_pos = self.raw.len();
            self.eof = self.raw_eof;
            return Ok(());
        };
        let end = (self.raw_pos + GUNZIP_STEP).min(self.raw.len());
        // Flushed so that everything inflated so far is in the output, not in the decoder.
        let mut inflate = gz
            .write_all(&self.raw[self.raw_pos..end])
            .and_then(|()| gz.flush());
        self.raw_pos = end;
        let last = self.raw_pos == self.raw.len() && self.raw_eof;
        if last && inflate.is_ok() {
            inflate = gz.try_finish();
        }
        self.buf.append(gz.get_mut());
        if let Err(e) = inflate {
            return Err(self.decode_error(DecodeError(format!(
                "not valid gzip data (near compressed byte {}): {e}",
                self.offset - (self.raw.len() - self.raw_pos) as u64
            ))));
        }
        self.eof = last;
        Ok(())
    }

    async fn next_record(&mut self, store: &dyn Buckets) -> Result<Option<Value>, ItemReadError> {
        loop {
            let decoder = self.decoder.as_mut().expect("line formats have a decoder");
            match decoder.next(&self.buf[self.pos..], self.eof) {
                Ok(Decoded::Item(v, used)) => {
                    self.pos += used;
                    return Ok(Some(v));
                }
                Ok(Decoded::Skip(used)) => self.pos += used,
                Ok(Decoded::NeedMore) if self.eof => {
                    self.buf = Vec::new();
                    self.pos = 0;
                    return Ok(None);
                }
                Ok(Decoded::NeedMore) => {
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                    if self.buf.len() > MAX_RECORD_BYTES {
                        return Err(self.decode_error(DecodeError(format!(
                            "a record is longer than {MAX_RECORD_BYTES} bytes (after line {})",
                            self.decoder.as_ref().map_or(0, Decoder::line)
                        ))));
                    }
                    self.fill(store).await?;
                }
                Err(e) => return Err(self.decode_error(e)),
            }
        }
    }

    async fn read_whole(&mut self, store: &dyn Buckets) -> Result<Vec<u8>, ItemReadError> {
        let mut bytes = Vec::new();
        loop {
            let more = store
                .read(
                    &self.req.bucket,
                    &self.req.key,
                    bytes.len() as u64,
                    READ_BYTES,
                )
                .await?;
            let done = (more.len() as u64) < READ_BYTES;
            bytes.extend_from_slice(&more);
            if bytes.len() as u64 > JSON_MAX_BYTES {
                return Err(self.decode_error(DecodeError(format!(
                    "an object read as InputType JSON is parsed whole and may be at most {JSON_MAX_BYTES} bytes: use JSONL or CSV for larger batches"
                ))));
            }
            if done {
                self.eof = true;
                return Ok(bytes);
            }
        }
    }

    async fn next_listed(&mut self, store: &dyn Buckets) -> Result<Option<Value>, ItemReadError> {
        if self.eof {
            return Ok(None);
        }
        let page = store
            .list(
                &self.req.bucket,
                &self.req.prefix,
                self.listed_after.as_deref(),
                LIST_PAGE,
            )
            .await?;
        self.eof = page.len() < LIST_PAGE;
        if let Some(last) = page.last() {
            self.listed_after = Some(last.key.clone());
        }
        // The item shape of AWS's listObjectsV2 reader.
        self.ready = page
            .into_iter()
            .map(|o| {
                json!({
                    "Etag": format!("\"{}\"", o.etag),
                    "Key": o.key,
                    "LastModified": o.last_modified,
                    "Size": o.size,
                    "StorageClass": "STANDARD",
                })
            })
            .collect();
        Ok(self.ready.pop_front())
    }
}

/// An S3 Inventory `manifest.json` (`fileFormat` CSV): its data files' bucket (from
/// `destinationBucket`, an ARN or a name; else the manifest's own), the columns its
/// `fileSchema` names, and the files' keys in order.
fn parse_manifest(bytes: &[u8], own_bucket: &str) -> Result<Manifest, DecodeError> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError(format!("the manifest is not JSON: {e}")))?;
    let field = |name: &str| {
        doc.get(name)
            .ok_or_else(|| DecodeError(format!("the manifest has no '{name}'")))
    };
    match field("fileFormat")?.as_str() {
        Some("CSV") => {}
        other => {
            return Err(DecodeError(format!(
                "the manifest's fileFormat is {}, but only CSV inventories can be read",
                other.map_or_else(|| doc["fileFormat"].to_string(), str::to_string)
            )));
        }
    }
    let columns: Vec<String> = field("fileSchema")?
        .as_str()
        .ok_or_else(|| DecodeError("the manifest's 'fileSchema' must be a string".into()))?
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    if columns.iter().any(String::is_empty) {
        return Err(DecodeError(format!(
            "the manifest's fileSchema names an empty column: {:?}",
            doc["fileSchema"]
        )));
    }
    let bucket = match doc.get("destinationBucket") {
        None => own_bucket.to_string(),
        Some(Value::String(b)) => b.strip_prefix("arn:aws:s3:::").unwrap_or(b).to_string(),
        Some(other) => {
            return Err(DecodeError(format!(
                "the manifest's 'destinationBucket' must be a string, not {other}"
            )));
        }
    };
    let files = field("files")?
        .as_array()
        .ok_or_else(|| DecodeError("the manifest's 'files' must be an array".into()))?
        .iter()
        .enumerate()
        .map(|(i, f)| match f.get("key").and_then(Value::as_str) {
            Some(k) if !k.is_empty() => Ok(k.to_string()),
            _ => Err(DecodeError(format!(
                "the manifest's files[{i}] has no 'key' (a non-empty string)"
            ))),
        })
        .collect::<Result<VecDeque<String>, DecodeError>>()?;
    Ok(Manifest {
        bucket,
        columns,
        files,
    })
}
