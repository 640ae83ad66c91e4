//! The parameters of a request (query or form body) under RFC 6749's rules: empty parameters
//! are treated as absent (section 3.1) and a repeated parameter is refused (section 3.2),
//! except those an extension allows to repeat.

use gatehouse_core::OAuthError;
use std::borrow::Cow;

/// Parameters that may appear more than once (RFC 8707 `resource`).
const REPEATABLE: [&str; 1] = ["resource"];

#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    repeated: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text.
    ///
    /// # Errors
    /// `invalid_request` naming a repeated parameter.
    pub fn parse(bytes: &[u8]) -> Result<Params, OAuthError> {
        let params = Params::parse_noting_repeats(bytes);
        match params.repeated.first() {
            Some(name) => Err(OAuthError::invalid_request(format!(
                "parameter {name} is repeated"
            ))),
            None => Ok(params),
        }
    }

    /// Parses like [`Params::parse`] but keeps the first value of a repeated parameter and
    /// notes its name ([`Params::repeated`]): the authorization endpoint must still tell
    /// whether the client and redirect URI are sound before it knows where to send the error.
    #[must_use]
    pub fn parse_noting_repeats(bytes: &[u8]) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut repeated: Vec<String> = Vec::new();
        for (k, v) in pairs_of(bytes) {
            if v.is_empty() {
                continue;
            }
            if !REPEATABLE.contains(&k.as_ref()) && pairs.iter().any(|(name, _)| name == k.as_ref())
            {
                if !repeated.iter().any(|r| r == k.as_ref()) {
                    repeated.push(k.into_owned());
                }
                continue;
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Params { pairs, repeated }
    }

    /// Names of parameters that appeared more than once (only after
    /// [`Params::parse_noting_repeats`]).
    #[must_use]
    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// # Errors
    /// `invalid_request` naming the missing parameter.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// Every value of a repeatable parameter.
    #[must_use]
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// An owned copy of a parameter.
    #[must_use]
    pub fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }
}

/// The name-value pairs of form text, decoded exactly as `form_urlencoded::parse` decodes
/// them (the fuzz test below holds them to it). A part with no `%` or `+` (most of them:
/// tokens, codes, grant types) is only checked for UTF-8; one with them is decoded in runs
/// between escapes rather than byte by byte. Form decoding was the costliest single step of
/// a token request carrying a long refresh token or code and an escaped redirect URI.
fn pairs_of(bytes: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    bytes
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            (decoded(name), decoded(value))
        })
}

/// One name or value: `+` is a space, `%` and two hex digits the byte they name, anything
/// else (a `%` without two hex digits too) itself; then UTF-8 as [`text_of`] reads it.
fn decoded(part: &[u8]) -> Cow<'_, str> {
    let special = |b: &u8| *b == b'%' || *b == b'+';
    let Some(first) = part.iter().position(special) else {
        return text_of(part);
    };
    let mut out = Vec::with_capacity(part.len());
    let mut rest = part;
    let mut next = Some(first);
    while let Some(at) = next {
        out.extend_from_slice(&rest[..at]);
        let (byte, used) = match rest[at] {
            b'+' => (b' ', 1),
            _ => match (
                rest.get(at + 1).and_then(|d| hex(*d)),
                rest.get(at + 2).and_then(|d| hex(*d)),
            ) {
                (Some(high), Some(low)) => (high << 4 | low, 3),
                _ => (b'%', 1),
            },
        };
        out.push(byte);
        rest = &rest[at + used..];
        next = rest.iter().position(special);
    }
    out.extend_from_slice(rest);
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// The value of one hex digit.
fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// UTF-8 text, invalid sequences replaced as `String::from_utf8_lossy` does; valid text (all
/// but hostile input) is checked by `from_utf8`, which reads words at a time where the lossy
/// reader goes byte by byte.
fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_empties() {
        let f = Params::parse(b"a=1&b=&resource=x&resource=y&c=%20z+").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None, "empty values count as omitted");
        assert_eq!(f.all("resource"), vec!["x", "y"]);
        assert_eq!(f.get("c"), Some(" z "));
        let e = Params::parse(b"scope=a&scope=b").err().unwrap();
        assert_eq!(e.description, "parameter scope is repeated");
        assert!(Params::parse(b"b=&b=1").is_ok());
        assert_eq!(
            f.require("missing").unwrap_err().description,
            "missing parameter missing"
        );
    }

    /// The fast path decodes every input exactly as the reference decoder does: arbitrary
    /// bytes, weighted towards the separators, escapes and invalid UTF-8 that tell them apart.
    #[test]
    fn pairs_decode_as_the_reference_decoder_does() {
        let (seed, cases) = gatehouse_testkit::fuzz::settings(0x5eed_f0e5, 20_000);
        let mut rng = gatehouse_testkit::fuzz::Rng(seed);
        let pieces: [&[u8]; 20] = [
            b"&",
            b"=",
            b"%",
            b"+",
            b"%2",
            b"%41",
            b"%zz",
            b"%C3%A9",
            b"%c3%a9",
            b"%3a%2F",
            b"%%41",
            b"%4g",
            b"%FF",
            b"%00",
            b"\xc3\xa9",
            b"\xff",
            b"\xc3",
            b"a",
            b"code",
            b"&&",
        ];
        for case in 0..cases {
            let mut input = Vec::new();
            for _ in 0..rng.below(24) {
                if rng.below(4) == 0 {
                    input.push(u8::try_from(rng.below(256)).unwrap_or(0));
                } else {
                    input.extend_from_slice(pieces[rng.below(pieces.len())]);
                }
            }
            let fast: Vec<_> = pairs_of(&input).collect();
            let reference: Vec<_> = form_urlencoded::parse(&input).collect();
            assert_eq!(fast, reference, "case {case} (seed {seed}): {input:?}");
        }
    }
}
