//! Documents that carry a whole file as base64 in one JSON field, handled so that the file is in
//! memory once: the field is decoded in place in the buffer that holds the document, and a
//! document's base64 tail is encoded a chunk at a time as it is sent. The Proxy's file routes and
//! the command-line client's uploads and downloads use them.

use std::borrow::Cow;
use std::ops::Range;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::StatusCode;

use crate::error::Error;

/// Base64 characters decoded per step (a multiple of 4).
const DECODE_STEP: usize = 16 * 1024;
/// Bytes encoded per chunk of an answer (a multiple of 3).
pub const ENCODE_STEP: usize = 48 * 1024;
/// Room in a file's body for everything but the content: name, wraps, content type, JSON.
pub const FIELDS_ROOM: usize = 64 * 1024;

/// The bytes of a base64 text of `n` bytes, padded.
pub const fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Where a base64 field's text is: inside the body (decoded in place), or in a string of its own
/// when JSON escapes (`\/`) made the parser copy it.
pub enum B64Field {
    InBody(Range<usize>),
    Copied(String),
}

impl B64Field {
    /// `text` must be a field parsed from `body` with `#[serde(borrow)]`.
    pub fn locate(body: &[u8], text: Cow<'_, str>) -> Self {
        match text {
            Cow::Borrowed(s) => {
                let start = s.as_ptr() as usize - body.as_ptr() as usize;
                debug_assert!(start + s.len() <= body.len());
                B64Field::InBody(start..start + s.len())
            }
            Cow::Owned(s) => B64Field::Copied(s),
        }
    }

    /// The decoded bytes, in `body`'s own buffer when the text is in it.
    pub fn decode(self, mut body: Vec<u8>, field: &str) -> Result<(Vec<u8>, Range<usize>), Error> {
        let invalid = || Error::status(StatusCode::BAD_REQUEST, format!("{field} is not valid base64"));
        match self {
            B64Field::InBody(range) => {
                let n = decode_in_place(&mut body[range.clone()]).ok_or_else(invalid)?;
                Ok((body, range.start..range.start + n))
            }
            B64Field::Copied(text) => {
                drop(body);
                let decoded = STANDARD.decode(text).map_err(|_| invalid())?;
                let n = decoded.len();
                Ok((decoded, 0..n))
            }
        }
    }
}

/// Decodes the standard, padded base64 in `buf` to the front of `buf`; answers the decoded length.
/// Each step writes behind where it reads, so no second buffer is needed.
pub fn decode_in_place(buf: &mut [u8]) -> Option<usize> {
    let mut out = [0u8; DECODE_STEP / 4 * 3];
    let (mut read, mut written) = (0, 0);
    while read < buf.len() {
        let end = (read + DECODE_STEP).min(buf.len());
        let n = STANDARD.decode_slice(&buf[read..end], &mut out).ok()?;
        // Padding may only end the whole text: a step before the last must decode to whole groups,
        // or `AA==` at a step's end would be taken for the middle of a longer value.
        if end < buf.len() && n != out.len() {
            return None;
        }
        buf[written..written + n].copy_from_slice(&out[..n]);
        read = end;
        written += n;
    }
    zeroize::Zeroize::zeroize(&mut out);
    Some(written)
}

/// The JSON object `fields` with one more, last string field `name`: `data` (`data_len` bytes),
/// base64-encoded a chunk at a time as the body is sent. Answers the document's exact length and
/// its body, so the reader can hold it in one buffer of the right size.
pub fn document_with_b64_tail<S, E>(
    fields: serde_json::Value,
    name: &str,
    data: S,
    data_len: usize,
) -> (usize, impl Stream<Item = Result<Bytes, E>> + Send)
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let head = head_before(fields, name);
    (head.len() + b64_len(data_len) + 2, json_with_b64_tail(head, data))
}

/// A JSON document whose last field is a large base64 value, as a body: `head` (up to and
/// including the value's opening quote), then the data encoded a chunk at a time, then `"}`.
fn json_with_b64_tail<S, E>(head: String, data: S) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let state = (Some(head), Box::pin(data), Vec::<u8>::new(), false);
    futures::stream::unfold(state, |(head, mut data, mut carry, finished)| async move {
        if let Some(head) = head {
            return Some((Ok(Bytes::from(head)), (None, data, carry, finished)));
        }
        if finished {
            return None;
        }
        loop {
            match data.next().await {
                Some(Ok(chunk)) => {
                    carry.extend_from_slice(&chunk);
                    let whole = carry.len() / 3 * 3;
                    if whole == 0 {
                        continue;
                    }
                    let out = STANDARD.encode(&carry[..whole]);
                    carry.drain(..whole);
                    return Some((Ok(Bytes::from(out)), (None, data, carry, false)));
                }
                Some(Err(e)) => return Some((Err(e), (None, data, carry, true))),
                None => {
                    let mut tail = STANDARD.encode(&carry);
                    tail.push_str("\"}");
                    return Some((Ok(Bytes::from(tail)), (None, data, Vec::new(), true)));
                }
            }
        }
    })
}

/// `bytes` as a stream of chunks (for [`document_with_b64_tail`] over data already in memory).
pub fn chunks(bytes: Bytes) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let n = bytes.len().div_ceil(ENCODE_STEP);
    futures::stream::iter(
        (0..n).map(move |i| Ok(bytes.slice(i * ENCODE_STEP..((i + 1) * ENCODE_STEP).min(bytes.len())))),
    )
}

/// A JSON object's head up to a last string field `name`: `{"a":…,"name":"`.
fn head_before(fields: serde_json::Value, name: &str) -> String {
    let mut head = serde_json::to_string(&fields).expect("JSON values serialize");
    debug_assert!(head.ends_with('}'));
    head.pop();
    if head.len() > 1 {
        head.push(',');
    }
    head.push_str(&serde_json::to_string(name).expect("a string serializes"));
    head.push_str(":\"");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_decoding_matches_the_standard_decoder_at_every_size() {
        for n in [0usize, 1, 2, 3, 4, 100, DECODE_STEP / 4 * 3 - 1, DECODE_STEP / 4 * 3, DECODE_STEP, 100_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let mut buf = STANDARD.encode(&data).into_bytes();
            let written = decode_in_place(&mut buf).unwrap();
            assert_eq!(&buf[..written], &data[..], "{n} bytes");
        }
        assert!(decode_in_place(&mut b"not base64!".to_vec()).is_none());
        assert!(decode_in_place(&mut b"AA==AAAA".to_vec()).is_none(), "padding inside");
        assert!(decode_in_place(&mut b"AAA".to_vec()).is_none(), "unpadded");
    }

    #[test]
    fn padding_at_the_end_of_a_step_before_the_last_is_refused() {
        // Found by `bench/fuzz` (base64_fields): a padded group ending the first 16 KiB step, then
        // more text, was decoded as two values glued together instead of refused.
        let mut buf = [b"QUJD".repeat(DECODE_STEP / 4 - 1), b"AA==".to_vec(), b"QUJD".to_vec()].concat();
        assert!(STANDARD.decode(&buf).is_err());
        assert!(decode_in_place(&mut buf).is_none(), "padding inside the text");
        // The same padded group at the very end is fine.
        let mut buf = [b"QUJD".repeat(DECODE_STEP / 4), b"AA==".to_vec()].concat();
        let written = decode_in_place(&mut buf).unwrap();
        assert_eq!(
            &buf[..written],
            &STANDARD.decode([b"QUJD".repeat(DECODE_STEP / 4), b"AA==".to_vec()].concat()).unwrap()[..]
        );
    }

    #[test]
    fn a_borrowed_field_is_decoded_inside_the_body_and_an_escaped_one_from_its_copy() {
        #[derive(serde::Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            v: Cow<'a, str>,
        }
        let body = br#"{"v":"aGVsbG8gd29ybGQ="}"#.to_vec();
        let parsed: Body = serde_json::from_slice(&body).unwrap();
        let field = B64Field::locate(&body, parsed.v);
        assert!(matches!(field, B64Field::InBody(_)));
        let (buf, range) = field.decode(body, "v").unwrap();
        assert_eq!(&buf[range], b"hello world");

        let body = br#"{"v":"Pz8\/"}"#.to_vec();
        let parsed: Body = serde_json::from_slice(&body).unwrap();
        let field = B64Field::locate(&body, parsed.v);
        assert!(matches!(field, B64Field::Copied(_)));
        let (buf, range) = field.decode(body, "v").unwrap();
        assert_eq!(&buf[range], b"???");
    }

    #[tokio::test]
    async fn streamed_base64_is_the_whole_document() {
        for n in [0usize, 1, 2, 3, ENCODE_STEP - 1, ENCODE_STEP, ENCODE_STEP * 2 + 5] {
            let data: Bytes = (0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
            let (length, body) =
                document_with_b64_tail(serde_json::json!({ "id": 1 }), "dataB64", chunks(data.clone()), n);
            let parts: Vec<Bytes> = body.map(|r| r.unwrap()).collect().await;
            let whole = parts.concat();
            assert_eq!(whole.len(), length);
            let doc: serde_json::Value = serde_json::from_slice(&whole).unwrap();
            assert_eq!(doc["id"], 1);
            assert_eq!(STANDARD.decode(doc["dataB64"].as_str().unwrap()).unwrap(), data.to_vec(), "{n} bytes");
        }
        let (_, body) = document_with_b64_tail(serde_json::json!({}), "x", chunks(Bytes::from_static(b"ab")), 2);
        let parts: Vec<Bytes> = body.map(|r| r.unwrap()).collect().await;
        assert_eq!(parts.concat(), br#"{"x":"YWI="}"#);
    }
}
