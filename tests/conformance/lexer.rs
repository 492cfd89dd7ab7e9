//! A tokenizer for Rust source: enough of the language to tell comments, string literals,
//! identifiers and brackets apart, for the conformance scan.

pub fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The kind of a token of Rust source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ident,
    /// `(`, `[` or `{`.
    Open,
    /// `)`, `]` or `}`.
    Close,
    /// Any other single character outside literals and comments.
    Punct,
    /// A string literal of any kind (`"..."`, `r#"..."#`, `b"..."`), quotes included.
    Str,
    /// A line or block comment, doc comments included.
    Comment,
    /// A number, a character literal or a lifetime.
    Other,
}

/// A token of Rust source; whitespace makes none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset in the text lexed.
    pub offset: usize,
    /// 1-based line of its first character.
    pub line: usize,
}

pub fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// The offset just past the closing `quote` of a literal whose body starts at `i`, skipping
/// backslash escapes; the end of the text when it is not closed.
fn end_of_quoted(b: &[u8], mut i: usize, quote: u8) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            q if q == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The offset just past a raw string whose `#`s start at `i` (`r#"..."#`), or `None` when no
/// quote follows them (a raw identifier, `r#type`).
fn end_of_raw(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    if b.get(i + hashes) != Some(&b'"') {
        return None;
    }
    let mut j = i + hashes + 1;
    while j < b.len() {
        if b[j] == b'"'
            && b[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(b.len())
}

/// Splits Rust source into tokens: enough of the language to tell comments, string literals,
/// identifiers and brackets apart (character literals and lifetimes, raw and byte strings, nested
/// block comments). `first_line` is the line number of the text's first line.
pub fn lex(text: &str, first_line: usize) -> Vec<Token<'_>> {
    let b = text.as_bytes();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, first_line);
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            None
        } else if b[i..].starts_with(b"//") {
            i += b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .unwrap_or(b.len() - i);
            Some(Kind::Comment)
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            Some(Kind::Comment)
        } else if c == b'"' {
            i = end_of_quoted(b, i + 1, b'"');
            Some(Kind::Str)
        } else if c == b'\'' {
            let next = text[i + 1..].chars().next().map_or(0, char::len_utf8);
            if b.get(i + 1) == Some(&b'\\') {
                i = end_of_quoted(b, i + 1, b'\'');
            } else if b.get(i + 1 + next) == Some(&b'\'') {
                i += 2 + next;
            } else {
                i += 1;
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
            }
            Some(Kind::Other)
        } else if is_ident_start(c) {
            while i < b.len() && (is_ident_byte(b[i]) || b[i] >= 0x80) {
                i += 1;
            }
            match (&text[start..i], b.get(i)) {
                ("b" | "c", Some(b'"')) => {
                    i = end_of_quoted(b, i + 1, b'"');
                    Some(Kind::Str)
                }
                ("b", Some(b'\'')) => {
                    i = end_of_quoted(b, i + 1, b'\'');
                    Some(Kind::Other)
                }
                ("r" | "br" | "cr", Some(b'"' | b'#')) => match end_of_raw(b, i) {
                    Some(end) => {
                        i = end;
                        Some(Kind::Str)
                    }
                    None => Some(Kind::Ident),
                },
                _ => Some(Kind::Ident),
            }
        } else if c.is_ascii_digit() {
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            Some(Kind::Other)
        } else if matches!(c, b'(' | b'[' | b'{') {
            i += 1;
            Some(Kind::Open)
        } else if matches!(c, b')' | b']' | b'}') {
            i += 1;
            Some(Kind::Close)
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            Some(Kind::Punct)
        };
        let i_end = i.min(b.len());
        i = i_end;
        if let Some(kind) = kind {
            tokens.push(Token {
                kind,
                text: &text[start..i],
                offset: start,
                line,
            });
        }
        line += b[start..i].iter().filter(|&&c| c == b'\n').count();
    }
    tokens
}

/// The index of the token closing the group opened at `open`, or the last index when the group
/// is not closed.
pub fn group_end(code: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in code.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    code.len().saturating_sub(1)
}

/// The arguments of the group opened at `open` and closed at `close`: index ranges split at the
/// commas outside nested brackets.
pub fn arguments(code: &[Token], open: usize, close: usize) -> Vec<std::ops::Range<usize>> {
    let mut args = Vec::new();
    let (mut depth, mut from) = (0usize, open + 1);
    for (k, t) in code.iter().enumerate().take(close).skip(open + 1) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Punct if depth == 0 && t.text == "," => {
                args.push(from..k);
                from = k + 1;
            }
            _ => {}
        }
    }
    if from < close {
        args.push(from..close);
    }
    args
}

pub fn is(t: Option<&Token>, kind: Kind, text: &str) -> bool {
    t.is_some_and(|t| t.kind == kind && t.text == text)
}
