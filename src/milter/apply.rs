//! Turn the engine's `Modification` into milter actions. The whole plan is checked before
//! anything is sent, so a message is changed completely or not at all.

use super::message::Message;
use crate::engine::{HeaderEdit, Modification};
use crate::rewrite::Splice;
use indymilter::{ActionError, Actions, ContextActions, EomActions};
use std::collections::HashMap;
use std::ffi::CString;

/// One header operation as the milter protocol expresses it.
#[derive(Debug, PartialEq)]
pub enum HeaderOp {
    /// Insert at `at` (0: the topmost field): new fields go at the top, in order, where a
    /// malformed field before them cannot hide them from readers.
    Add { at: i32, name: String, value: String },
    /// Change the `index`-th (1-based, per name) header; `None` deletes it.
    Change { name: String, index: i32, value: Option<String> },
}

/// Header operations plus the actions they and the body replacement need.
#[derive(Debug)]
pub struct Plan<'m> {
    pub headers: Vec<HeaderOp>,
    pub body: Option<&'m Splice>,
    pub needs: Actions,
}

/// Work out the operations for `m`, given the headers the MTA sent (`seen`, in order).
pub fn plan<'m>(m: &'m Modification<Splice>, seen: &[CString]) -> Result<Plan<'m>, String> {
    let mut counts: HashMap<String, i32> = HashMap::new();
    let mut headers = Vec::new();
    let mut added = 0;
    for edit in &m.header_edits {
        let (HeaderEdit::Set { name, .. } | HeaderEdit::Add { name, .. } | HeaderEdit::Remove { name }) = edit;
        check_name(name)?;
        let n = counts.entry(name.to_ascii_lowercase()).or_insert_with(|| occurrences(seen, name));
        match edit {
            HeaderEdit::Set { value, .. } if *n > 0 => {
                headers.push(HeaderOp::Change { name: name.clone(), index: 1, value: Some(one_line(value)) });
            }
            HeaderEdit::Set { value, .. } | HeaderEdit::Add { value, .. } => {
                headers.push(HeaderOp::Add { at: added, name: name.clone(), value: one_line(value) });
                added += 1;
                *n += 1;
            }
            HeaderEdit::Remove { .. } => {
                // Highest index first: right whether or not the MTA renumbers after a delete.
                headers.extend((1..=*n).rev().map(|index| HeaderOp::Change { name: name.clone(), index, value: None }));
                *n = 0;
            }
        }
    }
    let mut needs = Actions::empty();
    for op in &headers {
        needs |= match op {
            HeaderOp::Add { .. } => Actions::ADD_HEADER,
            HeaderOp::Change { .. } => Actions::CHANGE_HEADER,
        };
    }
    if m.body.is_some() {
        needs |= Actions::REPLACE_BODY;
    }
    Ok(Plan { headers, body: m.body.as_ref(), needs })
}

/// Body replacement chunks (the milter protocol's limit is 64 KB).
const CHUNK: usize = 64 * 1024;

/// Send the plan to the MTA (at end of message): the new body's prefix, the unchanged
/// rest of `message` in chunks (read from wherever it is kept), the suffix.
/// Why sending the changes failed, and whether the body had already been partly replaced.
#[derive(Debug)]
pub struct SendError {
    pub why: String,
    /// Part of a new body went out: the MTA holds a truncated message unless it is told
    /// to drop the changes (tempfail).
    pub body_started: bool,
}

pub async fn send(plan: &Plan<'_>, message: &Message, actions: &EomActions) -> Result<(), SendError> {
    let early = |why| SendError { why, body_started: false };
    for op in &plan.headers {
        match op {
            HeaderOp::Add { at, name, value } => {
                actions.insert_header(*at, name.as_str(), value.as_str()).await.map_err(sending).map_err(early)?
            }
            HeaderOp::Change { name, index, value } => {
                actions.change_header(name.as_str(), *index, value.as_deref()).await.map_err(sending).map_err(early)?
            }
        }
    }
    let Some(body) = plan.body else { return Ok(()) };
    send_body(body, message, actions).await.map_err(|why| SendError { why, body_started: true })
}

async fn send_body(body: &Splice, message: &Message, actions: &EomActions) -> Result<(), String> {
    replace_body(actions, &body.prefix).await?;
    let mut at = body.from;
    loop {
        let chunk = message.read_at(at, CHUNK).map_err(|e| format!("reading the spilled body: {e}"))?;
        if chunk.is_empty() {
            break;
        }
        replace_body(actions, &chunk).await?;
        at += chunk.len();
    }
    replace_body(actions, &body.suffix).await
}

async fn replace_body(actions: &EomActions, bytes: &[u8]) -> Result<(), String> {
    for chunk in bytes.chunks(CHUNK) {
        actions.replace_body(chunk).await.map_err(sending)?;
    }
    Ok(())
}

fn sending(e: ActionError) -> String {
    format!("sending the changes to the MTA failed: {e}")
}

fn occurrences(seen: &[CString], name: &str) -> i32 {
    let n = seen.iter().filter(|h| h.to_bytes().eq_ignore_ascii_case(name.as_bytes())).count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// RFC 5322 field names: printable ASCII without colon.
fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        Ok(())
    } else {
        Err(format!("invalid header name {name:?}"))
    }
}

/// The engine sanitises values; this is the last line of defence against header
/// injection (CR, LF) and truncation (NUL) all the same.
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n', '\0'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(names: &[&str]) -> Vec<CString> {
        names.iter().map(|n| CString::new(*n).unwrap()).collect()
    }

    fn modification(edits: Vec<HeaderEdit>, body: Option<&[u8]>) -> Modification<Splice> {
        let body = body.map(|b| Splice { prefix: b.to_vec(), from: 0, suffix: Vec::new() });
        Modification { header_edits: edits, body, summary: String::new() }
    }

    fn set(name: &str, value: &str) -> HeaderEdit {
        HeaderEdit::Set { name: name.into(), value: value.into() }
    }

    #[test]
    fn set_changes_the_first_or_adds() {
        let m = modification(vec![set("content-type", "text/plain"), set("X-New", "1")], None);
        let p = plan(&m, &seen(&["From", "Content-Type"])).unwrap();
        assert_eq!(
            p.headers,
            [
                HeaderOp::Change { name: "content-type".into(), index: 1, value: Some("text/plain".into()) },
                HeaderOp::Add { at: 0, name: "X-New".into(), value: "1".into() },
            ]
        );
        assert_eq!(p.needs, Actions::ADD_HEADER | Actions::CHANGE_HEADER);
    }

    /// New fields are inserted at the top, in the order of the edits.
    #[test]
    fn added_fields_go_to_the_top_in_order() {
        let m = modification(vec![set("Content-Type", "multipart/mixed"), set("MIME-Version", "1.0"), set("From", "x")], None);
        let p = plan(&m, &seen(&["Date", "From"])).unwrap();
        let at: Vec<_> = p.headers.iter().filter_map(|op| match op {
            HeaderOp::Add { at, name, .. } => Some((*at, name.as_str())),
            HeaderOp::Change { .. } => None,
        }).collect();
        assert_eq!(at, [(0, "Content-Type"), (1, "MIME-Version")]);
    }

    #[test]
    fn remove_deletes_every_occurrence_from_the_last() {
        let m = modification(vec![HeaderEdit::Remove { name: "Received".into() }], Some(b"new"));
        let p = plan(&m, &seen(&["Received", "From", "received"])).unwrap();
        let deleted: Vec<_> = p.headers.iter().map(|op| match op {
            HeaderOp::Change { index, value: None, .. } => *index,
            other => panic!("unexpected {other:?}"),
        }).collect();
        assert_eq!(deleted, [2, 1]);
        assert_eq!(p.needs, Actions::CHANGE_HEADER | Actions::REPLACE_BODY);
        assert_eq!(p.body.map(|b| &b.prefix[..]), Some(&b"new"[..]));
    }

    #[test]
    fn set_after_remove_adds() {
        let m = modification(vec![HeaderEdit::Remove { name: "X-A".into() }, set("X-A", "v")], None);
        let p = plan(&m, &seen(&["X-A"])).unwrap();
        assert_eq!(p.headers.last(), Some(&HeaderOp::Add { at: 0, name: "X-A".into(), value: "v".into() }));
    }

    #[test]
    fn values_cannot_inject_headers() {
        let m = modification(vec![set("X-A", "v\r\nBcc: victim@example.org\0")], None);
        let p = plan(&m, &[]).unwrap();
        assert_eq!(p.headers, [HeaderOp::Add { at: 0, name: "X-A".into(), value: "v  Bcc: victim@example.org ".into() }]);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "Bad Name", "X:Y", "X\r\nY", "Ä"] {
            assert!(plan(&modification(vec![set(name, "v")], None), &[]).is_err(), "{name:?}");
        }
    }
}
