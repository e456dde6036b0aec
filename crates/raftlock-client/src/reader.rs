//! Reading the fields back out of a refusal's message. The server writes
//! names and labels there quoted as Rust's `{:?}` does; this undoes that.
//! The text comes from the network: anything unexpected is `None`.

/// A cursor over a message, taking it apart from the front.
pub(crate) struct Reader<'a> {
    rest: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader { rest: text }
    }

    /// Skips `expected`, which must come next.
    pub fn literal(&mut self, expected: &str) -> Option<()> {
        self.rest = self.rest.strip_prefix(expected)?;
        Some(())
    }

    /// The text up to `end` (not taken), which must not be empty.
    pub fn word(&mut self, end: char) -> Option<&'a str> {
        let at = self.rest.find(end).filter(|at| *at > 0)?;
        let (word, rest) = self.rest.split_at(at);
        self.rest = rest;
        Some(word)
    }

    /// A decimal number.
    pub fn number(&mut self) -> Option<u64> {
        let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, rest) = self.rest.split_at(digits);
        let number = number.parse().ok()?;
        self.rest = rest;
        Some(number)
    }

    /// A string as `{:?}` quotes it: `"a \"b\"\n"`.
    pub fn quoted(&mut self) -> Option<String> {
        let mut chars = self.rest.strip_prefix('"')?.char_indices();
        let mut text = String::new();
        loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => {
                    self.rest = &self.rest[1 + at + 1..];
                    return Some(text);
                }
                '\\' => text.push(unescape(&mut chars)?),
                c => text.push(c),
            }
        }
    }

    /// Whether nothing is left.
    pub fn end(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

/// The character an escape stands for; `chars` is just past the backslash.
fn unescape(chars: &mut std::str::CharIndices<'_>) -> Option<char> {
    Some(match chars.next()?.1 {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        '0' => '\0',
        c @ ('\\' | '"' | '\'') => c,
        'u' => {
            if chars.next()?.1 != '{' {
                return None;
            }
            let mut code = 0u32;
            let mut digits = 0;
            loop {
                let c = chars.next()?.1;
                if c == '}' {
                    break;
                }
                // At most six hex digits, as in `\u{10ffff}`: no overflow.
                digits += 1;
                if digits > 6 {
                    return None;
                }
                code = code * 16 + c.to_digit(16)?;
            }
            if digits == 0 {
                return None;
            }
            char::from_u32(code)?
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_message_apart() {
        let mut r = Reader::new(r#"lock "a \"b\"\n\u{1b}" is 42 (x)"#);
        assert_eq!(r.literal("lock "), Some(()));
        assert_eq!(r.quoted().as_deref(), Some("a \"b\"\n\u{1b}"));
        assert_eq!(r.literal(" is "), Some(()));
        assert_eq!(r.number(), Some(42));
        assert_eq!(r.literal(" ("), Some(()));
        assert_eq!(r.word(')'), Some("x"));
        assert_eq!(r.literal(")"), Some(()));
        assert_eq!(r.end(), Some(()));
    }

    #[test]
    fn refuses_what_is_not_quoted_right() {
        for bad in [
            "",
            "abc",
            r#""unterminated"#,
            r#""bad escape \q""#,
            r#""\u{}""#,
            r#""\u{110000}""#,
            r#""\u{d800}""#,
            r#""\u{1234567}""#,
            r#""\u1234""#,
            r#""\"#,
        ] {
            assert_eq!(Reader::new(bad).quoted(), None, "{bad:?}");
        }
        assert_eq!(Reader::new("x").number(), None);
        assert_eq!(Reader::new("99999999999999999999999").number(), None);
        assert_eq!(Reader::new(")").word(')'), None);
        assert_eq!(Reader::new("abc").word(')'), None);
    }

    proptest! {
        #[test]
        fn any_string_quoted_by_debug_reads_back(text in any::<String>(), tail in "[ -~]{0,8}") {
            let quoted = format!("{text:?}{tail}");
            let mut reader = Reader::new(&quoted);
            prop_assert_eq!(reader.quoted(), Some(text));
            prop_assert_eq!(reader.literal(&tail), Some(()));
            prop_assert_eq!(reader.end(), Some(()));
        }

        #[test]
        fn any_text_is_read_or_refused_without_panic(text in any::<String>()) {
            let mut reader = Reader::new(&text);
            let _ = reader.quoted();
            let _ = reader.number();
            let _ = reader.word(')');
        }
    }
}
