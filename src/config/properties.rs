//! The properties syntax of `neo4j.properties` (CFG-1 .. CFG-5): lines and their ends, comments,
//! continuation lines, the key/value separators and escapes, as `java.util.Properties.load`
//! reads them, with the differences spec/config.md names (trailing whitespace, a byte order mark,
//! malformed `\uXXXX` escapes).
//!
//! Hand-written rather than the `java-properties` crate (2.0.0), which was run against this
//! file's tests and gets something spec/config.md requires wrong at every stage: it loses a pair
//! whose last line ends in a backslash at the very end of the text (CFG-3) and strips any Unicode
//! whitespace, not only space, tab and form feed, from continuation lines; it refuses the
//! surrogate pair `\uD83D\uDE00`, accepts `\u+123`, and its errors do not say which escape was
//! malformed (CFG-4); it resolves escapes inside comments, so `# C:\users` is an error (CFG-1);
//! and it keeps trailing whitespace (CFG-5), which cannot be trimmed after it, because it hands
//! back only finished pairs, where an escaped space looks like any other. No stage of it could
//! be kept for the rest.

use super::{one_line, ConfigError};

/// One key/value pair of properties text, after escapes (CFG-1 .. CFG-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The 1-based line the pair starts on.
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Whitespace as the properties syntax knows it: space, tab, form feed.
pub(super) fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0c'
}

/// The lines of `text`, each without its terminator (`\n`, `\r\n` or `\r`).
fn natural_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                i += 1;
                if bytes.get(i) == Some(&b'\n') {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn ends_in_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// The key/value pairs of properties text, in file order, duplicates included (CFG-1 .. CFG-5).
pub fn parse_properties(text: &str) -> Result<Vec<Property>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = natural_lines(text);
    let mut properties = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_number = i + 1;
        let mut current = lines[i].trim_start_matches(is_ws);
        i += 1;
        if current.is_empty() || current.starts_with('#') || current.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        loop {
            if !ends_in_odd_backslashes(current) {
                logical.push_str(current);
                break;
            }
            logical.push_str(&current[..current.len() - 1]);
            match lines.get(i) {
                Some(next) => {
                    current = next.trim_start_matches(is_ws);
                    i += 1;
                }
                None => break,
            }
        }
        properties.push(split_pair(line_number, &logical)?);
    }
    Ok(properties)
}

/// Splits one logical line into key and value (CFG-2) and resolves their escapes.
fn split_pair(line: usize, logical: &str) -> Result<Property, ConfigError> {
    let chars: Vec<char> = logical.chars().collect();
    let mut key_end = 0;
    let mut value_start = chars.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    while key_end < chars.len() {
        let c = chars[key_end];
        if !preceding_backslash && (c == '=' || c == ':') {
            value_start = key_end + 1;
            has_separator = true;
            break;
        }
        if !preceding_backslash && is_ws(c) {
            value_start = key_end + 1;
            break;
        }
        preceding_backslash = c == '\\' && !preceding_backslash;
        key_end += 1;
    }
    while value_start < chars.len() {
        let c = chars[value_start];
        if !is_ws(c) {
            if !has_separator && (c == '=' || c == ':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    Ok(Property {
        line,
        key: unescape(line, &chars[..key_end], false)?,
        value: unescape(line, &chars[value_start..], true)?,
    })
}

/// Resolves escapes (CFG-4). With `trim_end`, trailing whitespace that was not escaped is
/// dropped (CFG-5).
fn unescape(line: usize, chars: &[char], trim_end: bool) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(chars.len());
    // The length of `out` up to its last character that must be kept.
    let mut keep = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            out.push(c);
            if !(trim_end && is_ws(c)) {
                keep = out.len();
            }
            continue;
        }
        let Some(&e) = chars.get(i) else {
            // Unreachable from parse_properties (a trailing odd backslash continues the line);
            // a lone backslash at the very end stands for nothing, as in Java.
            break;
        };
        i += 1;
        let resolved = match e {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            'u' => {
                let unit = hex4(line, chars, i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = (chars.get(i) == Some(&'\\') && chars.get(i + 1) == Some(&'u'))
                        .then(|| hex4(line, chars, i + 2))
                        .transpose()?
                        .filter(|low| (0xDC00..0xE000).contains(low));
                    let Some(low) = low else {
                        return Err(lone_surrogate(line, unit));
                    };
                    i += 6;
                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    char::from_u32(code).expect("a surrogate pair is a valid scalar value")
                } else {
                    char::from_u32(unit).ok_or_else(|| lone_surrogate(line, unit))?
                }
            }
            other => other,
        };
        out.push(resolved);
        keep = out.len();
    }
    if trim_end {
        out.truncate(keep);
    }
    Ok(out)
}

/// The four hex digits of a `\uXXXX` escape starting at `chars[at]`.
fn hex4(line: usize, chars: &[char], at: usize) -> Result<u32, ConfigError> {
    let digits: String = chars.iter().skip(at).take(4).collect();
    if digits.len() == 4 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(u32::from_str_radix(&digits, 16).expect("four hex digits"))
    } else {
        Err(ConfigError::Syntax {
            line,
            message: format!(
                "malformed \\uXXXX escape '\\u{}': expected four hex digits",
                one_line(&digits)
            ),
        })
    }
}

fn lone_surrogate(line: usize, unit: u32) -> ConfigError {
    ConfigError::Syntax {
        line,
        message: format!(
            "escape '\\u{unit:04X}' is half of a UTF-16 surrogate pair without its other half"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{error, parse, DAY};
    use crate::retention::RetentionPolicy;
    use proptest::prelude::*;
    use std::time::Duration;

    /// `s` written so that [`parse_properties`] reads it back unchanged, as a key or as a value:
    /// what lets `escaped_pairs_read_back` try any text. The product never needs it: every value
    /// `Config::to_properties` writes is in a canonical form that has nothing to escape.
    fn escape(s: &str, is_key: bool) -> String {
        let mut out = String::with_capacity(s.len());
        // Characters from this index on are trailing whitespace.
        let trailing = s.chars().count() - s.chars().rev().take_while(|&c| is_ws(c)).count();
        for (i, c) in s.chars().enumerate() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\x0c' => out.push_str("\\f"),
                // Leading whitespace is skipped, trailing whitespace trimmed (CFG-5); in a key,
                // whitespace ends the key.
                ' ' if is_key || i == 0 || i >= trailing => out.push_str("\\ "),
                '=' | ':' if is_key => {
                    out.push('\\');
                    out.push(c);
                }
                '#' | '!' if is_key && i == 0 => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    out.push_str(&format!("\\u{:04X}", c as u32));
                }
                c => out.push(c),
            }
        }
        out
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_properties(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn cfg_1_separators_comments_blank_lines_and_line_ends() {
        let text =
            "# a comment\n! another\n\n   \t\na=1\nb: 2\nc 3\n  \t d = 4\ne\t:\t5\r\nf=6\rg=7";
        assert_eq!(
            pairs(text),
            vec![
                pair("a", "1"),
                pair("b", "2"),
                pair("c", "3"),
                pair("d", "4"),
                pair("e", "5"),
                pair("f", "6"),
                pair("g", "7"),
            ]
        );
        // A comment is a whole line; `#` later in a line is data.
        assert_eq!(pairs("  # x=1\na=b#c"), vec![pair("a", "b#c")]);
        // A comment is skipped as it is: what would be a malformed escape elsewhere is no error.
        assert_eq!(pairs("# C:\\users\\me\na=1"), vec![pair("a", "1")]);
        // A leading byte order mark is not part of the first key.
        assert_eq!(pairs("\u{feff}a=1"), vec![pair("a", "1")]);
        let config = parse("\u{feff}online_backup_enabled=false\r\n");
        assert!(!config.online_backup_enabled);
    }

    #[test]
    fn cfg_1_line_numbers_count_every_line_end() {
        let props = parse_properties("a=1\r\n\r\n# c\rb=2\n").unwrap();
        assert_eq!(props[1].line, 4);
    }

    #[test]
    fn cfg_2_key_ends_at_first_unescaped_separator() {
        assert_eq!(pairs("a=b=c"), vec![pair("a", "b=c")]);
        assert_eq!(pairs("a:b:c"), vec![pair("a", "b:c")]);
        // Whitespace, then at most one `=` or `:`, then whitespace.
        assert_eq!(pairs("a := b"), vec![pair("a", "= b")]);
        assert_eq!(pairs("a = = b"), vec![pair("a", "= b")]);
        assert_eq!(pairs("a b c"), vec![pair("a", "b c")]);
        // A key alone has an empty value; a line that starts with `=` has an empty key.
        assert_eq!(pairs("lonely"), vec![pair("lonely", "")]);
        assert_eq!(pairs("lonely =  "), vec![pair("lonely", "")]);
        assert_eq!(pairs("=v"), vec![pair("", "v")]);
        // Escaped separators belong to the key.
        assert_eq!(pairs(r"a\=b\:c\ d=e"), vec![pair("a=b:c d", "e")]);
    }

    #[test]
    fn cfg_3_continuation_lines() {
        assert_eq!(pairs("a=one \\\n     two"), vec![pair("a", "one two")]);
        assert_eq!(pairs("a=x\\\r\n\ty\\\rz"), vec![pair("a", "xyz")]);
        // The key can be continued too, and a continued line starting with `#` is data.
        assert_eq!(pairs("ke\\\n  y=v\\\n#w"), vec![pair("key", "v#w")]);
        // An even number of backslashes is escaped backslashes, no continuation.
        assert_eq!(
            pairs("a=x\\\\\nb=y"),
            vec![pair("a", "x\\"), pair("b", "y")]
        );
        assert_eq!(pairs("a=x\\\\\\\ny"), vec![pair("a", "x\\y")]);
        // A comment does not continue.
        assert_eq!(pairs("# c \\\na=1"), vec![pair("a", "1")]);
        // A blank continuation line ends the pair; a backslash at the end of text is dropped.
        assert_eq!(
            pairs("a=1\\\n\nb=2\\"),
            vec![pair("a", "1"), pair("b", "2")]
        );
        // Only space, tab and form feed are skipped at the start of a continuation line.
        assert_eq!(pairs("a=1\\\n\u{a0}b"), vec![pair("a", "1\u{a0}b")]);
        // Line numbers are those of the first line.
        let props = parse_properties("a=1\\\n2\nb=3").unwrap();
        assert_eq!((props[0].line, props[1].line), (1, 3));
        let config = parse("keep_logical_logs = 10 \\\n    days");
        assert_eq!(
            config.keep_logical_logs,
            RetentionPolicy::Age(Duration::from_secs(10 * DAY))
        );
    }

    #[test]
    fn cfg_4_escapes() {
        assert_eq!(
            pairs(r"k=\t\n\r\f\\\q\#\u0041\u00e9\u20AC"),
            vec![pair("k", "\t\n\r\x0c\\q#Aé€")]
        );
        assert_eq!(pairs(r"\u006B\u0065y=v"), vec![pair("key", "v")]);
        // A surrogate pair is one character.
        assert_eq!(pairs(r"k=\uD83D\uDE00"), vec![pair("k", "😀")]);
        // A backslash before a separator or whitespace makes it data.
        assert_eq!(pairs(r"k=a\=b\ c"), vec![pair("k", "a=b c")]);
        // UTF-8 text is taken as it is.
        assert_eq!(pairs("clé=valeur ☃"), vec![pair("clé", "valeur ☃")]);
    }

    #[test]
    fn cfg_4_malformed_unicode_escapes_are_errors() {
        assert_eq!(
            error("a=1\nk=\\u12G4"),
            r"line 2: malformed \uXXXX escape '\u12G4': expected four hex digits"
        );
        assert_eq!(
            error("k=\\u12"),
            r"line 1: malformed \uXXXX escape '\u12': expected four hex digits"
        );
        assert_eq!(
            error("k=\\uD83Dx"),
            r"line 1: escape '\uD83D' is half of a UTF-16 surrogate pair without its other half"
        );
        assert_eq!(
            error("k=\\uDE00"),
            r"line 1: escape '\uDE00' is half of a UTF-16 surrogate pair without its other half"
        );
        assert!(error("\\uZZZZ=1").starts_with("line 1: malformed"));
        // The line named is the one the pair starts on (CFG-3), after blank and comment lines.
        assert_eq!(
            error("# c\n\na=1\nk=x\\\n  y\\\n  \\u12G4"),
            r"line 4: malformed \uXXXX escape '\u12G4': expected four hex digits"
        );
        // Exactly four hex digits: no sign.
        assert_eq!(
            error("k=\\u+123"),
            r"line 1: malformed \uXXXX escape '\u+123': expected four hex digits"
        );
    }

    #[test]
    fn cfg_5_trailing_whitespace_of_values_is_dropped_unless_escaped() {
        assert_eq!(
            pairs("k=v \t\x0c \nk2=v2"),
            vec![pair("k", "v"), pair("k2", "v2")]
        );
        assert_eq!(pairs("k=v w  "), vec![pair("k", "v w")]);
        assert_eq!(pairs("k=v\\  "), vec![pair("k", "v ")]);
        assert_eq!(pairs(r"k=v\t"), vec![pair("k", "v\t")]);
        assert!(!parse("online_backup_enabled=false   ").online_backup_enabled);
        assert_eq!(
            error("online_backup_enabled=false\\ "),
            "invalid value 'false ' for online_backup_enabled: expected true or false"
        );
    }

    proptest! {
        // CFG-4, CFG-5: any key and value, escaped, read back unchanged.
        #[test]
        fn escaped_pairs_read_back(key in "\\PC*", value in any::<String>(), crlf in any::<bool>()) {
            let end = if crlf { "\r\n" } else { "\n" };
            let text = format!("{}={}{end}# c{end}", escape(&key, true), escape(&value, false));
            let props = parse_properties(&text).unwrap();
            prop_assert_eq!(props, vec![Property { line: 1, key, value }]);
        }

    }
}
