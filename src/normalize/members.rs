//! The members of one JSON object, read from its text in a single pass: each key with the
//! raw text of its value, handed to a [`Visit`] as the walk meets them.
//!
//! The walk checks the text as a JSON parser does ([`json_scan`](crate::json_scan)), so a
//! value it hands out is valid JSON whatever the text was; it never panics nor reads past
//! the text: anything that is not JSON is a [`Malformed`] error.

use std::borrow::Cow;

use super::value::unescape;
use crate::json_scan::{self as scan, Malformed, Token};

/// A member's key, as the walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key<'r> {
    /// The key is the visitor's guess: written exactly as it, without escapes.
    Guessed,
    /// Any other key, decoded; borrowed from the text unless it holds escapes.
    Read(Cow<'r, str>),
}

/// What a walk does with the members of an object.
pub(crate) trait Visit<'r> {
    /// Why a walk stops early: the text is not JSON, or the visitor refuses a member.
    type Error: From<Malformed>;

    /// The key the next member is guessed to have: a key written exactly as the guess
    /// (between quotes) is known from one comparison with the text, instead of being read.
    /// A guess must not hold `"`, `\` or a control character, which JSON writes escaped.
    fn guess(&self) -> Option<&str>;

    /// One member: its key, the raw text of its value (valid JSON, without the whitespace
    /// around it) and what the walk learned of the value while checking it.
    fn member(&mut self, key: Key<'r>, raw: &'r str, token: Token) -> Result<(), Self::Error>;
}

/// Walks the object whose `{` is at byte `at` of `text`, handing each member to `visitor`
/// in text order; returns the position just past the object's `}`. A [`Malformed`] error
/// counts its offset from the object's `{`, so that it reads the same wherever the object
/// lies in a larger text (a record in a page).
pub(crate) fn walk_object<'r, V: Visit<'r>>(
    text: &'r str,
    at: usize,
    visitor: &mut V,
) -> Result<usize, V::Error> {
    members(text, at, visitor).map_err(|error| match error {
        Walk::Malformed(Malformed { at: offset, expected }) => {
            Malformed { at: offset.saturating_sub(at), expected }.into()
        }
        Walk::Visitor(error) => error,
    })
}

/// Why a walk stopped: the text, or the visitor.
enum Walk<E> {
    Malformed(Malformed),
    Visitor(E),
}

impl<E> From<Malformed> for Walk<E> {
    fn from(malformed: Malformed) -> Self {
        Walk::Malformed(malformed)
    }
}

/// The walk of [`walk_object`], with offsets in `text`.
fn members<'r, V: Visit<'r>>(
    text: &'r str,
    at: usize,
    visitor: &mut V,
) -> Result<usize, Walk<V::Error>> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'{') {
        return Err(Malformed { at, expected: "an object" }.into());
    }
    scan::elements(bytes, at, |pos| {
        let (key_end, key) =
            match visitor.guess().and_then(|guess| guessed_key_end(bytes, pos, guess)) {
                Some(end) => (end, Key::Guessed),
                None => read_key(text, pos).map(|(end, key)| (end, Key::Read(key)))?,
            };
        let start = scan::after_colon(bytes, key_end)?;
        let (end, token) = scan::token(bytes, start, 1)?;
        let raw = text.get(start..end).ok_or(Malformed { at: start, expected: "a value" })?;
        visitor.member(key, raw, token).map_err(Walk::Visitor)?;
        Ok(end)
    })
}

/// The end of the key at `at` if it is written as `"guess"`.
fn guessed_key_end(bytes: &[u8], at: usize, guess: &str) -> Option<usize> {
    let close = at + 1 + guess.len();
    let quoted = bytes.get(at) == Some(&b'"') && bytes.get(close) == Some(&b'"');
    (quoted && bytes.get(at + 1..close) == Some(guess.as_bytes())).then_some(close + 1)
}

/// The end of the key string at `at`, and the key decoded.
fn read_key(text: &str, at: usize) -> Result<(usize, Cow<'_, str>), Malformed> {
    let (end, escaped) = scan::string(text.as_bytes(), at)?;
    let inner = text.get(at + 1..end - 1).ok_or(Malformed { at, expected: "a key" })?;
    let key = match escaped {
        true => Cow::Owned(
            unescape(inner)
                .ok_or(Malformed { at, expected: "a key whose escapes decode to Unicode text" })?,
        ),
        false => Cow::Borrowed(inner),
    };
    Ok((end, key))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A visitor that keeps every member, guessing keys from a script.
    #[derive(Default)]
    pub(crate) struct Collect {
        /// The guess for each member in turn; no guess past its end.
        pub(crate) guesses: Vec<Option<String>>,
        /// Each member: whether its key was the guess, the key, the raw value.
        pub(crate) members: Vec<(bool, String, String)>,
    }

    impl<'r> Visit<'r> for Collect {
        type Error = Malformed;

        fn guess(&self) -> Option<&str> {
            self.guesses.get(self.members.len()).and_then(|g| g.as_deref())
        }

        fn member(&mut self, key: Key<'r>, raw: &'r str, _: Token) -> Result<(), Malformed> {
            let (guessed, key) = match key {
                Key::Guessed => (true, self.guess().unwrap_or_default().to_string()),
                Key::Read(key) => (false, key.into_owned()),
            };
            self.members.push((guessed, key, raw.to_string()));
            Ok(())
        }
    }

    /// The members of the object that starts `text` (after whitespace), each key and
    /// value as text, and where the object ends.
    pub(crate) fn walk(text: &str) -> Result<(Vec<(String, String)>, usize), Malformed> {
        let mut collect = Collect::default();
        let end = walk_object(text, scan::whitespace(text.as_bytes(), 0), &mut collect)?;
        Ok((collect.members.into_iter().map(|(_, k, v)| (k, v)).collect(), end))
    }

    fn members(text: &str) -> Vec<(String, String)> {
        walk(text).expect("well formed").0
    }

    /// Every kind of value is sliced exactly, whitespace and nesting included, and the
    /// walk ends just past the object.
    #[test]
    fn values_are_raw_slices() {
        let text = " {\"a\" : 1 ,\"b\":\"x,}\\\"y\",\n\"c\":{\"d\":[1,{\"e\":\"]\"}]},\"f\":null,\
                    \"g\":-1.5e3,\"h\":true,\"i\":[],\"j\":\"\"} ";
        let want = [
            ("a", "1"),
            ("b", "\"x,}\\\"y\""),
            ("c", "{\"d\":[1,{\"e\":\"]\"}]}"),
            ("f", "null"),
            ("g", "-1.5e3"),
            ("h", "true"),
            ("i", "[]"),
            ("j", "\"\""),
        ];
        let want: Vec<_> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(walk(text), Ok((want, text.len() - 1)));
        assert_eq!(members("{\"a\":1}"), [("a".to_string(), "1".to_string())]);
        assert_eq!(members("{\"a\":[1] }"), [("a".to_string(), "[1]".to_string())]);
        assert!(members("{}").is_empty());
        assert_eq!(walk(" { } ,1"), Ok((vec![], 4)));
    }

    /// Keys with escapes are decoded; plain keys are borrowed.
    #[test]
    fn keys_are_decoded_when_escaped() {
        let text = r#"{"\u0061\n":1,"中文":2}"#;
        let (decoded, plain) = (read_key(text, 1).unwrap().1, read_key(text, 14).unwrap().1);
        assert_eq!((decoded.as_ref(), plain.as_ref()), ("a\n", "中文"));
        assert!(matches!(decoded, Cow::Owned(_)));
        assert!(matches!(plain, Cow::Borrowed(_)));
    }

    /// A key written as the guess is known without being read; a guess that is a prefix of
    /// the key, or longer than what is left of the text, is not the key; after a wrong
    /// guess the key is still read, and an escaped key is never the guess.
    #[test]
    fn guesses_are_checked_against_the_text() {
        let text = r#"{"callId":1, "call":2,"\u0061":3,"b":"x"}"#;
        let guesses = ["callId", "callIdAndMore", "a", "b"];
        let mut collect = Collect {
            guesses: guesses.iter().map(|g| Some(g.to_string())).collect(),
            ..Collect::default()
        };
        assert_eq!(walk_object(text, 0, &mut collect), Ok(text.len()));
        let want =
            [(true, "callId", "1"), (false, "call", "2"), (false, "a", "3"), (true, "b", "\"x\"")];
        let want: Vec<_> =
            want.iter().map(|(g, k, v)| (*g, k.to_string(), v.to_string())).collect();
        assert_eq!(collect.members, want);
        let mut cut = Collect { guesses: vec![Some("callId".into())], ..Collect::default() };
        assert!(walk_object(r#"{"callI"#, 0, &mut cut).is_err());
    }

    /// An error's offset counts from the object's `{`, wherever the object lies.
    #[test]
    fn errors_count_from_the_object() {
        let alone = walk_object(r#"{"a":01}"#, 0, &mut Collect::default());
        let in_page = walk_object(r#"[{"b":1}, {"a":01}]"#, 10, &mut Collect::default());
        assert_eq!(alone, Err(Malformed { at: 6, expected: "',' or '}'" }));
        assert_eq!(in_page, alone);
    }

    /// Non-objects are refused, and a text cut short or not JSON is an error, never a
    /// panic.
    #[test]
    fn non_objects_cut_texts_and_bad_json() {
        for text in ["[1]", "\"a\"", "1", ""] {
            assert!(walk(text).is_err(), "{text}");
        }
        let full = r#"{"a\\":"x\"y" , "b" :[1,{"c":2}],"d":3}"#;
        assert_eq!(members(full).len(), 3);
        for end in 1..full.len() {
            let Some(cut) = full.get(..end) else { continue };
            assert!(walk(cut).is_err(), "{cut}");
        }
        for bad in
            [r#"{"a":01}"#, r#"{"a":tru}"#, "{\"a\":\"x\ty\"}", r#"{"a":"\q"}"#, r#"{"a":1,}"#]
        {
            assert!(walk(bad).is_err(), "{bad}");
        }
    }
}
