//! The members of one JSON object, read from its text in a single pass: each key with the
//! raw text of its value.
//!
//! The text is that of a [`serde_json::value::RawValue`], so it is valid JSON: the walk only
//! finds where each token ends, without checking what serde_json has checked already. It
//! still never panics nor reads past the text: anything it did not expect is a
//! [`Malformed`] error.

use std::borrow::Cow;
use std::fmt;

use super::value::unescape;

/// The walk met something a valid JSON object does not hold there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// Byte offset in the object's text.
    pub(crate) at: usize,
    /// What was expected.
    pub(crate) expected: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

/// A key and the raw text of its value.
pub(crate) type Member<'r> = (Cow<'r, str>, &'r str);

/// The members of a JSON object, in text order. Keys are borrowed from the text unless they
/// hold escapes; values are raw JSON slices of the text, without surrounding whitespace.
#[derive(Debug)]
pub(crate) struct Members<'r> {
    text: &'r str,
    pos: usize,
    first: bool,
    done: bool,
}

impl<'r> Members<'r> {
    /// The members of `text`, or `None` when it is not an object.
    pub(crate) fn of(text: &'r str) -> Option<Self> {
        let mut members = Self { text, pos: 0, first: true, done: false };
        members.skip_whitespace();
        (members.peek() == Some(b'{')).then(|| {
            members.pos += 1;
            members
        })
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn malformed(&self, expected: &'static str) -> Malformed {
        Malformed { at: self.pos, expected }
    }

    fn skip_whitespace(&mut self) {
        let rest = &self.text.as_bytes()[self.pos.min(self.text.len())..];
        self.pos += rest.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')).count();
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), Malformed> {
        if self.peek() != Some(byte) {
            return Err(self.malformed(expected));
        }
        self.pos += 1;
        Ok(())
    }

    /// The text from `start` to the current position.
    fn since(&self, start: usize) -> Result<&'r str, Malformed> {
        self.text.get(start..self.pos).ok_or(Malformed { at: start, expected: "a token" })
    }

    /// Moves past the string that starts here; whether it holds escapes.
    fn string(&mut self) -> Result<bool, Malformed> {
        self.expect(b'"', "a string")?;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        while let Some(&byte) = bytes.get(self.pos) {
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        Err(self.malformed("the end of a string"))
    }

    /// Moves past the object or array that starts here.
    fn composite(&mut self) -> Result<(), Malformed> {
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        while let Some(&byte) = bytes.get(self.pos) {
            match byte {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or_else(|| self.malformed("a value"))?;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err(self.malformed("the end of an object or array"))
    }

    /// Moves past the value that starts here.
    fn value(&mut self) -> Result<(), Malformed> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => self.composite(),
            Some(_) => {
                // A number or a literal: up to the next delimiter.
                let rest = &self.text.as_bytes()[self.pos..];
                let len = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return Err(self.malformed("a value"));
                }
                self.pos += len;
                Ok(())
            }
            None => Err(self.malformed("a value")),
        }
    }

    /// The next member, like [`Iterator::next`], and whether its key is `guess`: a key
    /// written exactly as `guess` (between quotes, without escapes) is known from one
    /// comparison with the text instead of being read on its own. A `guess` must not hold
    /// `"`, `\` or a control character, which a JSON text spells with escapes.
    pub(crate) fn next_guessing(
        &mut self,
        guess: Option<&str>,
    ) -> Option<Result<(bool, Member<'r>), Malformed>> {
        if self.done {
            return None;
        }
        let next = self.member(guess).transpose();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }

    /// The key at the current position if it is written as `"guess"`, moving past it.
    fn guessed_key(&mut self, guess: &str) -> Option<&'r str> {
        let close = self.pos + 1 + guess.len();
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') || bytes.get(close) != Some(&b'"') {
            return None;
        }
        let key = self.text.get(self.pos + 1..close).filter(|key| *key == guess)?;
        self.pos = close + 1;
        Some(key)
    }

    /// The next member, or `None` at the end of the object.
    fn member(&mut self, guess: Option<&str>) -> Result<Option<(bool, Member<'r>)>, Malformed> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !self.first => {
                self.pos += 1;
                self.skip_whitespace();
            }
            _ if self.first => {}
            _ => return Err(self.malformed("',' or '}'")),
        }
        self.first = false;
        let (guessed, key) = match guess.and_then(|guess| self.guessed_key(guess)) {
            Some(key) => (true, Cow::Borrowed(key)),
            None => (false, self.key()?),
        };
        self.skip_whitespace();
        self.expect(b':', "':'")?;
        self.skip_whitespace();
        let start = self.pos;
        self.value()?;
        Ok(Some((guessed, (key, self.since(start)?))))
    }

    /// Reads the key string that starts here.
    fn key(&mut self) -> Result<Cow<'r, str>, Malformed> {
        let start = self.pos;
        let escaped = self.string()?;
        let quoted = self.since(start)?;
        let inner = &quoted[1..quoted.len() - 1];
        Ok(match escaped {
            true => Cow::Owned(unescape(inner).ok_or(Malformed {
                at: start,
                expected: "a key whose escapes decode to Unicode text",
            })?),
            false => Cow::Borrowed(inner),
        })
    }
}

impl<'r> Iterator for Members<'r> {
    type Item = Result<Member<'r>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_guessing(None).map(|member| member.map(|(_, member)| member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(String, String)> {
        Members::of(text)
            .expect("an object")
            .map(|m| m.map(|(k, v)| (k.into_owned(), v.to_string())))
            .collect::<Result<_, _>>()
            .expect("well formed")
    }

    /// Every kind of value is sliced exactly, whitespace and nesting included.
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
        assert_eq!(members(text), want);
        assert_eq!(members("{\"a\":1}"), [("a".to_string(), "1".to_string())]);
        assert_eq!(members("{\"a\":[1] }"), [("a".to_string(), "[1]".to_string())]);
        assert!(members("{}").is_empty());
        assert!(members(" { } ").is_empty());
    }

    /// Keys with escapes are decoded; plain keys are borrowed.
    #[test]
    fn keys_are_decoded_when_escaped() {
        let text = r#"{"\u0061\n":1,"中文":2}"#;
        let keys: Vec<_> = Members::of(text).unwrap().map(|m| m.unwrap().0).collect();
        assert_eq!(keys, ["a\n", "中文"]);
        assert!(matches!(keys[1], Cow::Borrowed(_)));
    }

    /// A key written as the guess is known without being read; a guess that is a prefix of
    /// the key, or longer than what is left of the text, is not the key; after a wrong
    /// guess the key is still read, and an escaped key is never the guess.
    #[test]
    fn guesses_are_checked_against_the_text() {
        let text = r#"{"callId":1, "call":2,"\u0061":3,"b":"x"}"#;
        let mut m = Members::of(text).unwrap();
        let mut next = |guess| m.next_guessing(guess).map(Result::unwrap);
        assert_eq!(next(Some("callId")), Some((true, (Cow::Borrowed("callId"), "1"))));
        assert_eq!(next(Some("callIdAndMore")), Some((false, (Cow::Borrowed("call"), "2"))));
        assert_eq!(next(Some("a")), Some((false, (Cow::Owned("a".into()), "3"))));
        assert_eq!(next(Some("b")), Some((true, (Cow::Borrowed("b"), "\"x\""))));
        assert_eq!(next(Some("b")), None);
        let mut cut = Members::of(r#"{"callI"#).unwrap();
        assert!(matches!(cut.next_guessing(Some("callId")), Some(Err(_))));
    }

    /// Non-objects are refused, and a text cut short is an error, never a panic.
    #[test]
    fn non_objects_and_cut_texts() {
        for text in ["[1]", "\"a\"", "1", ""] {
            assert!(Members::of(text).is_none(), "{text}");
        }
        let full = r#"{"a\\":"x\"y" , "b" :[1,{"c":2}],"d":3}"#;
        assert_eq!(members(full).len(), 3);
        for end in 1..full.len() {
            let Some(cut) = full.get(..end) else { continue };
            let walked: Vec<_> = Members::of(cut).unwrap().collect();
            assert!(walked.iter().any(|m| m.is_err()), "{cut}");
        }
    }
}
