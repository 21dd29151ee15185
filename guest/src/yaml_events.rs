//! An event-level pass over `agent.yaml` with libyaml, the parser serde_yaml
//! itself uses (so the two cannot disagree about the document).
//!
//! serde_yaml silently drops tags in the `tag:yaml.org,2002:` namespace
//! (`!!python/object:os.system`), and it keeps only the parsed number of a
//! plain scalar (`1.10` becomes `1.1`). The events still carry both, so this
//! pass refuses every tag and recovers how the top-level `version` was spelled.
//! It runs only after serde_yaml accepted the document (depth and alias limits).

#![allow(
    unsafe_code,
    reason = "libyaml's event API (through unsafe-libyaml) is C's: raw pointers, unions and manual frees"
)]

use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_yaml;

/// What the event pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// The text of a plain scalar given as the top-level `version`.
    pub plain_version: Option<String>,
}

/// A tag somewhere in the document, or a parse failure.
#[derive(Debug, PartialEq, Eq)]
pub enum EventError {
    /// A YAML tag on the node at `field` (dotted path, empty for the root).
    Tag {
        /// Where.
        field: String,
        /// The resolved tag.
        tag: String,
    },
    /// libyaml refused the document.
    Parse(String),
}

/// Position in the document: one frame per open mapping or sequence.
enum Frame {
    Map { key: Option<String>, awaiting_key: bool },
    Seq { index: usize },
}

/// Dotted path of the node about to start.
fn field_path(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Map {
                key: Some(key),
                awaiting_key: false,
            } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Seq { index } => path.push_str(&format!("[{index}]")),
            Frame::Map { .. } => {}
        }
    }
    path
}

/// Marks the current node of the innermost container as finished.
fn complete(frames: &mut [Frame]) {
    match frames.last_mut() {
        Some(Frame::Map { awaiting_key, .. }) => *awaiting_key = !*awaiting_key,
        Some(Frame::Seq { index }) => *index += 1,
        None => {}
    }
}

/// Owns a libyaml parser and frees it on drop.
struct Parser {
    sys: Box<MaybeUninit<unsafe_yaml::yaml_parser_t>>,
}

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: initialized in `scan` before any `Parser` is constructed.
        unsafe { unsafe_yaml::yaml_parser_delete(self.sys.as_mut_ptr()) }
    }
}

/// Walks every event of `input`, refusing tags and noting the version's spelling.
pub fn scan(input: &[u8]) -> Result<Findings, EventError> {
    let mut raw = Box::new(MaybeUninit::<unsafe_yaml::yaml_parser_t>::uninit());
    // SAFETY: libyaml initializes the parser in place; on failure nothing is owned.
    if unsafe { unsafe_yaml::yaml_parser_initialize(raw.as_mut_ptr()) }.fail {
        return Err(EventError::Parse("cannot initialize the YAML parser".into()));
    }
    let mut parser = Parser { sys: raw };
    // SAFETY: `input` outlives `parser`, which is dropped at the end of this function.
    unsafe {
        unsafe_yaml::yaml_parser_set_encoding(parser.sys.as_mut_ptr(), unsafe_yaml::YAML_UTF8_ENCODING);
        unsafe_yaml::yaml_parser_set_input_string(parser.sys.as_mut_ptr(), input.as_ptr(), input.len() as u64);
    }
    let mut frames: Vec<Frame> = Vec::new();
    let mut findings = Findings::default();
    loop {
        let mut event = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        // SAFETY: the parser is initialized; a successful call initializes `event`,
        // which is deleted below before the next iteration.
        if unsafe { unsafe_yaml::yaml_parser_parse(parser.sys.as_mut_ptr(), event.as_mut_ptr()) }.fail {
            return Err(EventError::Parse("libyaml could not parse the document".into()));
        }
        // SAFETY: the successful parse above initialized `event` (so it may be
        // borrowed) as a valid event, what `on_event` requires.
        let outcome = unsafe { on_event(&*event.as_ptr(), &mut frames, &mut findings) };
        // SAFETY: `event` was initialized by the successful parse above.
        unsafe { unsafe_yaml::yaml_event_delete(event.as_mut_ptr()) };
        match outcome {
            Ok(true) => return Ok(findings),
            Ok(false) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Handles one event; `Ok(true)` at the end of the stream.
///
/// # Safety
/// `event` must be a valid event produced by `yaml_parser_parse`.
unsafe fn on_event(
    event: &unsafe_yaml::yaml_event_t,
    frames: &mut Vec<Frame>,
    findings: &mut Findings,
) -> Result<bool, EventError> {
    let tag_of = |tag: *mut u8| -> Option<String> {
        // SAFETY: libyaml tags are NUL-terminated strings or null.
        (!tag.is_null()).then(|| unsafe { CStr::from_ptr(tag.cast()) }.to_string_lossy().into_owned())
    };
    let (tag, starts_container, scalar) = match event.type_ {
        unsafe_yaml::YAML_STREAM_END_EVENT => return Ok(true),
        unsafe_yaml::YAML_SCALAR_EVENT => {
            // SAFETY: for scalar events `data.scalar` is the active field.
            let data = unsafe { event.data.scalar };
            // SAFETY: libyaml guarantees `value` holds `length` bytes.
            let value = unsafe { std::slice::from_raw_parts(data.value, data.length as usize) };
            let plain = data.style == unsafe_yaml::YAML_PLAIN_SCALAR_STYLE;
            (
                tag_of(data.tag),
                None,
                Some((String::from_utf8_lossy(value).into_owned(), plain)),
            )
        }
        unsafe_yaml::YAML_SEQUENCE_START_EVENT => {
            // SAFETY: for sequence-start events `data.sequence_start` is the active field.
            let tag = unsafe { event.data.sequence_start.tag };
            (tag_of(tag), Some(false), None)
        }
        unsafe_yaml::YAML_MAPPING_START_EVENT => {
            // SAFETY: for mapping-start events `data.mapping_start` is the active field.
            let tag = unsafe { event.data.mapping_start.tag };
            (tag_of(tag), Some(true), None)
        }
        unsafe_yaml::YAML_ALIAS_EVENT => (None, None, None),
        unsafe_yaml::YAML_SEQUENCE_END_EVENT | unsafe_yaml::YAML_MAPPING_END_EVENT => {
            frames.pop();
            complete(frames);
            return Ok(false);
        }
        _ => return Ok(false),
    };
    if let Some(tag) = tag {
        return Err(EventError::Tag {
            field: field_path(frames),
            tag,
        });
    }
    let top_level_value_key = match frames.as_slice() {
        [
            Frame::Map {
                key,
                awaiting_key: false,
            },
        ] => key.clone(),
        _ => None,
    };
    if let Some(Frame::Map {
        key,
        awaiting_key: true,
    }) = frames.last_mut()
    {
        *key = Some(
            scalar
                .as_ref()
                .map_or_else(|| "<complex key>".to_owned(), |(text, _)| text.clone()),
        );
    } else if let (Some("version"), Some((text, true))) = (top_level_value_key.as_deref(), &scalar) {
        findings.plain_version = Some(text.clone());
    }
    match starts_container {
        Some(true) => frames.push(Frame::Map {
            key: None,
            awaiting_key: true,
        }),
        Some(false) => frames.push(Frame::Seq { index: 0 }),
        None => complete(frames),
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag_at(yaml: &str) -> Option<String> {
        match scan(yaml.as_bytes()) {
            Err(EventError::Tag { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn finds_tags_everywhere_with_their_field() {
        assert_eq!(tag_at("a: !!python/object:os.system ls\n").as_deref(), Some("a"));
        assert_eq!(tag_at("a: {b: [1, !x 2]}\n").as_deref(), Some("a.b[1]"));
        assert_eq!(tag_at("!!map {a: 1}\n").as_deref(), Some(""));
        assert_eq!(tag_at("a: !<tag:yaml.org,2002:str> x\n").as_deref(), Some("a"));
        assert_eq!(tag_at("- x\n- !!binary aGk=\n").as_deref(), Some("[1]"));
        assert_eq!(tag_at("a: 'quoted !not a tag'\nb: plain !not a tag\n"), None);
    }

    #[test]
    fn recovers_the_plain_version_text() {
        let found = scan(b"name: a\nversion: 1.10\nnested: {version: 9}\n").expect("scan");
        assert_eq!(found.plain_version.as_deref(), Some("1.10"));
        assert_eq!(scan(b"version: '2.0'\n").expect("scan").plain_version, None);
        assert_eq!(scan(b"x: {version: 3}\n").expect("scan").plain_version, None);
    }
}
