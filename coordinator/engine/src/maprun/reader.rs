//! [`ItemStream`]: one `ItemReader`'s items, read forward a chunk at a time.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::decode::{DecodeError, Decoded, Decoder, json_array};
use super::{BucketError, Buckets, ReadRequest};
use crate::asl::distributed::{ItemFormat, ReaderSource};

/// Bytes asked for per read of a line-oriented object.
pub const READ_BYTES: u64 = 1 << 20;
/// The largest object read as `InputType: JSON` (parsed whole, unlike JSONL and CSV).
pub const JSON_MAX_BYTES: u64 = 64 << 20;
/// Objects asked for per page of a listing.
const LIST_PAGE: usize = 1000;
/// The longest record (a line, or a CSV row with its quoted line ends).
const MAX_RECORD_BYTES: usize = 16 << 20;

/// Why the items could not be read: the caller names the state and makes it
/// `States.ItemReaderFailed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemReadError {
    #[error("{0}")]
    Store(#[from] BucketError),
    #[error("{bucket}/{key}: {error}")]
    Decode {
        bucket: String,
        key: String,
        error: DecodeError,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// A forward-only reader of one `ItemReader`'s items: `MaxItems` applied, nothing kept but
/// the current read and what is decoded from it.
#[derive(Debug)]
pub struct ItemStream {
    req: ReadRequest,
    decoder: Option<Decoder>,
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

impl ItemStream {
    pub fn new(req: ReadRequest) -> ItemStream {
        let decoder = match &req.source {
            ReaderSource::GetObject(format) => Decoder::new(format),
            ReaderSource::ListObjects => None,
        };
        ItemStream {
            req,
            decoder,
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
            ItemFormat::Manifest => Err(ItemReadError::Unsupported(
                "InputType MANIFEST (an S3 Inventory manifest) is not supported yet: list the objects with arn:aws:states:::s3:listObjectsV2, or write their keys to a CSV or JSONL object".into(),
            )),
            ItemFormat::Jsonl | ItemFormat::Csv(_) => self.next_record(store).await,
        }
    }

    fn decode_error(&self, error: DecodeError) -> ItemReadError {
        ItemReadError::Decode {
            bucket: self.req.bucket.clone(),
            key: self.req.key.clone(),
            error,
        }
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
                            "a record at byte {} is longer than {MAX_RECORD_BYTES} bytes",
                            self.offset - self.buf.len() as u64
                        ))));
                    }
                    let more = store
                        .read(&self.req.bucket, &self.req.key, self.offset, READ_BYTES)
                        .await?;
                    self.offset += more.len() as u64;
                    self.eof = (more.len() as u64) < READ_BYTES;
                    self.buf.extend_from_slice(&more);
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
