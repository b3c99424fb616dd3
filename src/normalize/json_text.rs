//! JSON string literals: the escaping shared by `_extra` keys and reject lines.

/// Hex digits of `\u00XX` escapes, lowercase as serde_json writes them.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` to `out` as a JSON string literal, quotes included, escaping exactly what
/// JSON requires (quote, backslash, control characters) as serde_json does.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut clean_from = 0;
    for (at, byte) in text.bytes().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[clean_from..at]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        } else {
            out.push_str(short);
        }
        clean_from = at + 1;
    }
    out.push_str(&text[clean_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, text);
        out
    }

    /// Special characters get JSON's short escapes and other control characters `\u00XX`.
    #[test]
    fn escapes_what_json_requires() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("\n\r\t\u{8}\u{c}\u{1}\u{1f}"), r#""\n\r\t\b\f\u0001\u001f""#);
        assert_eq!(quoted("中文 /é"), "\"中文 /é\"");
        assert_eq!(quoted(""), "\"\"");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any text is written exactly as serde_json writes it, and reads back unchanged.
        #[test]
        fn matches_serde_json(text in any::<String>()) {
            let ours = quoted(&text);
            prop_assert_eq!(&ours, &serde_json::to_string(&text).unwrap());
            prop_assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), text);
        }
    }
}
