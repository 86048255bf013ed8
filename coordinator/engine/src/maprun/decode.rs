//! Turning an object's bytes into items, a chunk at a time: JSON Lines and CSV are decoded
//! incrementally (a record may straddle two reads), a JSON array whole. Pure: the bytes come
//! from [`super::reader::ItemStream`]. Every error names the line it is on.

use serde_json::{Map, Value};

use crate::asl::distributed::{CsvFormat, CsvHeaders, ItemFormat};

/// Why an object's content is not items. The message names the line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// What an incremental decoder found at the start of its buffer.
#[derive(Debug)]
pub enum Decoded {
    /// An item and how many bytes it used.
    Item(Value, usize),
    /// Bytes that hold no item (a blank line, a CSV header row), to drop.
    Skip(usize),
    /// The buffer ends inside a record: read more (or, at the end, see `last`).
    NeedMore,
}

/// An incremental decoder of one object's records.
#[derive(Debug)]
pub enum Decoder {
    Jsonl {
        line: u64,
    },
    Csv {
        format: CsvFormat,
        headers: Option<Vec<String>>,
        line: u64,
    },
}

impl Decoder {
    /// A decoder for a line-oriented format; `None` for the formats read whole.
    pub fn new(format: &ItemFormat) -> Option<Decoder> {
        match format {
            ItemFormat::Jsonl => Some(Decoder::Jsonl { line: 1 }),
            ItemFormat::Csv(f) => Some(Decoder::Csv {
                headers: match &f.headers {
                    CsvHeaders::Given(h) => Some(h.clone()),
                    CsvHeaders::FirstRow => None,
                },
                format: f.clone(),
                line: 1,
            }),
            ItemFormat::Json | ItemFormat::Manifest => None,
        }
    }

    /// The line the next record starts on (1-based).
    pub fn line(&self) -> u64 {
        match self {
            Decoder::Jsonl { line } | Decoder::Csv { line, .. } => *line,
        }
    }

    /// Decodes the record at the start of `buf`. `last`: no more bytes will come, so a
    /// record without its line end is complete.
    pub fn next(&mut self, buf: &[u8], last: bool) -> Result<Decoded, DecodeError> {
        if buf.is_empty() {
            return Ok(Decoded::NeedMore);
        }
        match self {
            Decoder::Jsonl { line } => {
                let (text, used) = match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => (&buf[..i], i + 1),
                    None if last => (buf, buf.len()),
                    None => return Ok(Decoded::NeedMore),
                };
                let at = *line;
                *line += 1;
                let text = trim_line(text, at == 1);
                if text.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Decoded::Skip(used));
                }
                serde_json::from_slice(text)
                    .map(|v| Decoded::Item(v, used))
                    .map_err(|e| DecodeError(format!("line {at}: not a JSON value: {e}")))
            }
            Decoder::Csv {
                format,
                headers,
                line,
            } => {
                let Some((fields, used, lines)) = csv_record(buf, format.delimiter, last, *line)?
                else {
                    return Ok(Decoded::NeedMore);
                };
                *line += lines;
                if fields.len() == 1 && fields[0].is_empty() {
                    return Ok(Decoded::Skip(used)); // a blank line
                }
                let Some(names) = headers else {
                    let mut names = fields;
                    if let Some(first) = names.first_mut()
                        && let Some(rest) = first.strip_prefix('\u{feff}')
                    {
                        *first = rest.to_string();
                    }
                    *headers = Some(names);
                    return Ok(Decoded::Skip(used));
                };
                // As AWS reads a row: missing fields are empty, extra fields are dropped.
                let mut fields = fields.into_iter();
                let row: Map<String, Value> = names
                    .iter()
                    .map(|n| (n.clone(), Value::String(fields.next().unwrap_or_default())))
                    .collect();
                Ok(Decoded::Item(Value::Object(row), used))
            }
        }
    }
}

/// A line without its `\r` (and, on the first line, a UTF-8 byte order mark).
fn trim_line(text: &[u8], first: bool) -> &[u8] {
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if first {
        text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text)
    } else {
        text
    }
}

/// One CSV record (RFC 4180: quoted fields may hold delimiters, `""` and line ends) from the
/// start of `buf`: its fields, the bytes used and the lines it spans. `None`: the buffer
/// ends inside the record.
fn csv_record(
    buf: &[u8],
    delimiter: u8,
    last: bool,
    line: u64,
) -> Result<Option<(Vec<String>, usize, u64)>, DecodeError> {
    let mut fields = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut lines = 1u64;
    let mut i = 0;
    let mut quoted = false;
    // Whether the current field was quoted (then only a delimiter or line end may follow).
    let mut was_quoted = false;
    let finish = |field: &mut Vec<u8>, fields: &mut Vec<String>, at: u64| {
        let bytes = std::mem::take(field);
        String::from_utf8(bytes)
            .map(|s| fields.push(s))
            .map_err(|_| DecodeError(format!("line {at}: not UTF-8 text")))
    };
    while i < buf.len() {
        let b = buf[i];
        if quoted {
            match b {
                b'"' if buf.get(i + 1) == Some(&b'"') => {
                    field.push(b'"');
                    i += 2;
                    continue;
                }
                b'"' if i + 1 == buf.len() && !last => return Ok(None),
                b'"' => quoted = false,
                b'\n' => {
                    lines += 1;
                    field.push(b);
                }
                _ => field.push(b),
            }
            i += 1;
            continue;
        }
        match b {
            b'"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            b'"' => {
                return Err(DecodeError(format!(
                    "line {}: a quote inside an unquoted field (quote the whole field and double the quote)",
                    line + lines - 1
                )));
            }
            b'\n' => {
                if field.last() == Some(&b'\r') && !was_quoted {
                    field.pop();
                }
                finish(&mut field, &mut fields, line)?;
                return Ok(Some((fields, i + 1, lines)));
            }
            b'\r' if was_quoted && buf.get(i + 1) == Some(&b'\n') => {}
            b'\r' if was_quoted && i + 1 == buf.len() && !last => return Ok(None),
            d if d == delimiter => {
                finish(&mut field, &mut fields, line)?;
                was_quoted = false;
            }
            _ if was_quoted => {
                return Err(DecodeError(format!(
                    "line {}: text after a quoted field's closing quote",
                    line + lines - 1
                )));
            }
            _ => field.push(b),
        }
        i += 1;
    }
    if !last {
        return Ok(None);
    }
    if quoted {
        return Err(DecodeError(format!(
            "line {line}: a quoted field is never closed"
        )));
    }
    if field.last() == Some(&b'\r') && !was_quoted {
        field.pop();
    }
    finish(&mut field, &mut fields, line)?;
    Ok(Some((fields, buf.len(), lines)))
}

/// AWS's cause when an object read as `InputType: JSON` holds no array (the whole cause, as
/// AWS records it).
pub const NOT_ITERABLE: &str = "Attempting to map over non-iterable node.";

/// A whole JSON object read as `InputType: JSON`: its array's elements.
pub fn json_array(bytes: &[u8]) -> Result<Vec<Value>, DecodeError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(DecodeError(NOT_ITERABLE.into())),
        Err(e) => Err(DecodeError(format!("not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Decodes `text` fed in pieces of `step` bytes, as the reader feeds it.
    fn decode(format: &ItemFormat, text: &str, step: usize) -> Result<Vec<Value>, DecodeError> {
        let mut d = Decoder::new(format).unwrap();
        let bytes = text.as_bytes();
        let (mut buf, mut fed, mut out) = (Vec::new(), 0, Vec::new());
        loop {
            let last = fed == bytes.len();
            match d.next(&buf, last)? {
                Decoded::Item(v, used) => {
                    out.push(v);
                    buf.drain(..used);
                }
                Decoded::Skip(used) => {
                    buf.drain(..used);
                }
                Decoded::NeedMore if last => return Ok(out),
                Decoded::NeedMore => {
                    let end = (fed + step).min(bytes.len());
                    buf.extend_from_slice(&bytes[fed..end]);
                    fed = end;
                }
            }
        }
    }

    fn csv(headers: CsvHeaders, delimiter: u8) -> ItemFormat {
        ItemFormat::Csv(CsvFormat { headers, delimiter })
    }

    #[test]
    fn jsonl_in_any_pieces() {
        let text = "\u{feff}{\"a\": 1}\r\n\n  \n[2, 3]\n\"x\"";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                decode(&ItemFormat::Jsonl, text, step).unwrap(),
                vec![json!({"a": 1}), json!([2, 3]), json!("x")],
                "step {step}"
            );
        }
        let e = decode(&ItemFormat::Jsonl, "{\"a\": 1}\n\n{\"b\": \n", 4).unwrap_err();
        assert!(e.0.starts_with("line 3: not a JSON value"), "{e}");
    }

    #[test]
    fn csv_with_quotes_and_headers_in_any_pieces() {
        let text = "user,photo\r\nann,\"a,b.jpg\"\n\nbob,\"say \"\"hi\"\"\nthere\"\ncy,\n";
        for step in [1, 2, 5, 100] {
            assert_eq!(
                decode(&csv(CsvHeaders::FirstRow, b','), text, step).unwrap(),
                vec![
                    json!({"user": "ann", "photo": "a,b.jpg"}),
                    json!({"user": "bob", "photo": "say \"hi\"\nthere"}),
                    json!({"user": "cy", "photo": ""}),
                ],
                "step {step}"
            );
        }
        // Rows of AWS's recorded cases: too few fields are padded, too many cut.
        assert_eq!(
            decode(
                &csv(CsvHeaders::FirstRow, b','),
                "H1,\nv4,v5,v6\n,,,\n   \n",
                3
            )
            .unwrap(),
            vec![
                json!({"H1": "v4", "": "v5"}),
                json!({"H1": "", "": ""}),
                json!({"H1": "   ", "": ""}),
            ]
        );
        let given = csv(CsvHeaders::Given(vec!["k".into(), "v".into()]), b'|');
        assert_eq!(
            decode(&given, "a|1\nb|2", 3).unwrap(),
            vec![json!({"k": "a", "v": "1"}), json!({"k": "b", "v": "2"})]
        );
    }

    #[test]
    fn bad_csv_names_its_line() {
        let f = csv(CsvHeaders::FirstRow, b',');
        for (text, message) in [
            (
                "a,b\n1,2\nx\"y,2\n",
                "line 3: a quote inside an unquoted field",
            ),
            (
                "a,b\n\"1\nz\"q,2\n",
                "line 3: text after a quoted field's closing quote",
            ),
            (
                "a,b\n1,2\n\"open,2\n",
                "line 3: a quoted field is never closed",
            ),
        ] {
            for step in [1, 4, 100] {
                let e = decode(&f, text, step).unwrap_err();
                assert!(e.0.starts_with(message), "{text:?} step {step}: {e}");
            }
        }
    }

    #[test]
    fn json_arrays_whole() {
        assert_eq!(
            json_array(b"[1, {\"a\": 2}]").unwrap(),
            vec![json!(1), json!({"a": 2})]
        );
        assert!(
            json_array(b"{\"a\": 1}")
                .unwrap_err()
                .0
                .contains(NOT_ITERABLE)
        );
        assert!(json_array(b"[1,").unwrap_err().0.starts_with("not JSON"));
    }
}
