//! The text-format parse itself: prost-reflect's parser over Triton's schema (`proto/model_config.proto`,
//! compiled by build.rs), so strings, escapes, comments, `{...}` and `<...>` blocks and `[a, b]` lists read
//! as Triton's own (C++ protobuf) parser reads them, and a field Triton does not know is refused.
//!
//! One gap is bridged here: protobuf's C++ parser lets the `:` be left out before a list of messages
//! (`input [ { ... } ]`, as Triton's examples write it) but prost-reflect wants it. When the parse stops
//! there, a `:` is put in and the text parsed again; a list of numbers or strings still needs its `:`, as
//! in Triton.

use super::PbtxtError;
use miette::Diagnostic;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

/// prost-reflect's message where a field name is followed by neither `:` nor `{`/`<`.
const NO_COLON_BEFORE_LIST: &str = "expected ':' or a message value, but found '['";

struct Schema {
    config: MessageDescriptor,
    /// Names that no message-typed field of the schema has: a list of their values needs the `:`.
    scalar_only: HashSet<String>,
}

static SCHEMA: LazyLock<Result<Schema, PbtxtError>> = LazyLock::new(|| {
    let bytes: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_config.bin"));
    let pool = DescriptorPool::decode(bytes).map_err(|e| PbtxtError::Schema(e.to_string()))?;
    let config = pool
        .get_message_by_name("inference.ModelConfig")
        .ok_or_else(|| PbtxtError::Schema("inference.ModelConfig is missing".into()))?;
    let (mut messages, mut others) = (HashSet::new(), HashSet::new());
    for field in pool.all_messages().flat_map(|m| m.fields().collect::<Vec<_>>()) {
        let set = if matches!(field.kind(), Kind::Message(_)) { &mut messages } else { &mut others };
        set.insert(field.name().to_owned());
    }
    Ok(Schema { config, scalar_only: others.difference(&messages).cloned().collect() })
});

fn schema() -> Result<&'static Schema, PbtxtError> {
    SCHEMA.as_ref().map_err(PbtxtError::clone)
}

/// Parses `text` as an `inference.ModelConfig`.
pub(super) fn parse(text: &str) -> Result<DynamicMessage, PbtxtError> {
    let schema = schema()?;
    let mut patched = Cow::Borrowed(text);
    // Offsets in `patched` where a `:` was put in, ascending.
    let mut inserted: Vec<usize> = Vec::new();
    loop {
        let err = match DynamicMessage::parse_text_format(schema.config.clone(), &patched) {
            Ok(message) => return Ok(message),
            Err(err) => err,
        };
        let at = err.labels().and_then(|mut labels| labels.next()).map_or(patched.len(), |l| l.offset());
        let message = err.to_string();
        let progressed = inserted.last().is_none_or(|&last| at > last);
        let before = patched.get(..at);
        if message == NO_COLON_BEFORE_LIST && progressed && before.is_some_and(|b| colon_may_be_left_out(b, schema)) {
            patched.to_mut().insert(at, ':');
            inserted.push(at);
            continue;
        }
        let original = at - inserted.iter().filter(|&&i| i < at).count();
        return Err(syntax_error(text, original, message));
    }
}

/// Whether the field named just before a `[` may take a list without `:`: it is a message field
/// somewhere in the schema (or is unknown, which the parse then reports by name).
fn colon_may_be_left_out(before: &str, schema: &Schema) -> bool {
    let before = before.trim_end();
    let ident = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let len: usize = before.chars().rev().take_while(ident).count();
    let name = &before[before.len() - len..];
    !name.is_empty() && !schema.scalar_only.contains(name)
}

/// A parse error at byte `at` of `text`, with its line, column and the line's text.
fn syntax_error(text: &str, at: usize, message: String) -> PbtxtError {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let column = text[line_start..at].chars().count() + 1;
    let line = text[..line_start].matches('\n').count() + 1;
    // The line, or 80 characters of it around the error when it is long.
    let chars: Vec<char> = text[line_start..line_end].chars().collect();
    let from = (column - 1).saturating_sub(40).min(chars.len().saturating_sub(80));
    let near: String = chars.iter().skip(from).take(80).collect();
    PbtxtError::Syntax { line, column, message, near: near.trim().to_owned() }
}
