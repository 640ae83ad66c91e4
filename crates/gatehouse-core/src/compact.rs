//! The binary layout of the records that refresh tokens and authorization codes carry.
//!
//! JSON repeated every field's name in every token. It also made each token about a third
//! longer, and reading it was the largest single cost of opening one. Here a record is a
//! format byte and then its fields in a fixed order:
//! - a string is its length (LEB128) and its UTF-8 bytes;
//! - an optional string is a presence byte (0 or 1), then the string;
//! - a number is LEB128;
//! - a flag is one byte, 0 or 1.
//!
//! Reading is strict. A wrong presence or flag byte, a length past the end, invalid UTF-8,
//! an overlong number or bytes left over all refuse the record. A record is only read after
//! its token's tag or seal has been checked, so this never sees bytes from outside. The
//! strictness is there so that one record has exactly one encoding.

/// Builds a record.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new(format: u8) -> Writer {
        let mut bytes = Vec::with_capacity(256);
        bytes.push(format);
        Writer(bytes)
    }

    pub(crate) fn number(&mut self, mut n: u64) -> &mut Self {
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(low);
                return self;
            }
            self.0.push(low | 0x80);
        }
    }

    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.number(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    pub(crate) fn optional(&mut self, s: Option<&str>) -> &mut Self {
        self.0.push(u8::from(s.is_some()));
        if let Some(s) = s {
            self.text(s);
        }
        self
    }

    pub(crate) fn flag(&mut self, on: bool) -> &mut Self {
        self.0.push(u8::from(on));
        self
    }

    pub(crate) fn texts(&mut self, all: &[String]) -> &mut Self {
        self.number(all.len() as u64);
        for s in all {
            self.text(s);
        }
        self
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The record followed by the zero bytes that make it a whole number of `block`s (read
    /// back with [`Reader::end_padded`]).
    pub(crate) fn into_padded(mut self, block: usize) -> Vec<u8> {
        self.0.resize(self.0.len().div_ceil(block) * block, 0);
        self.0
    }
}

/// A record not in the exact layout.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Reads a record; every method fails with [`Malformed`] on anything but the exact layout.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader past the format byte, if `bytes` starts with `format`.
    pub(crate) fn new(bytes: &'a [u8], format: u8) -> Result<Reader<'a>, Malformed> {
        match bytes.split_first() {
            Some((&first, rest)) if first == format => Ok(Reader(rest)),
            _ => Err(Malformed),
        }
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
        self.0 = rest;
        Ok(b)
    }

    pub(crate) fn number(&mut self) -> Result<u64, Malformed> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            // The tenth byte may only hold the top bit of a u64, and no byte after the
            // first may be a redundant zero (one encoding per number).
            if shift == 63 && part > 1 {
                return Err(Malformed);
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return if b != 0 || shift == 0 {
                    Ok(n)
                } else {
                    Err(Malformed)
                };
            }
        }
        Err(Malformed)
    }

    pub(crate) fn text(&mut self) -> Result<String, Malformed> {
        let len = usize::try_from(self.number()?).map_err(|_| Malformed)?;
        if len > self.0.len() {
            return Err(Malformed);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| Malformed)
    }

    pub(crate) fn optional(&mut self) -> Result<Option<String>, Malformed> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.text().map(Some),
            _ => Err(Malformed),
        }
    }

    pub(crate) fn flag(&mut self) -> Result<bool, Malformed> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed),
        }
    }

    pub(crate) fn texts(&mut self) -> Result<Vec<String>, Malformed> {
        let count = usize::try_from(self.number()?).map_err(|_| Malformed)?;
        // Each string takes at least its length byte: a count above what is left is a lie,
        // refused before anything is allocated for it.
        if count > self.0.len() {
            return Err(Malformed);
        }
        (0..count).map(|_| self.text()).collect()
    }

    /// The end of the record: nothing may follow.
    pub(crate) fn end(self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// The end of a record padded to a multiple of `block` bytes: only the zero bytes that
    /// make it so may follow.
    pub(crate) fn end_padded(self, whole: usize, block: usize) -> Result<(), Malformed> {
        if whole.is_multiple_of(block) && self.0.len() < block && self.0.iter().all(|&b| b == 0) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_nothing_else_does() {
        let mut w = Writer::new(7);
        w.text("família")
            .optional(Some(""))
            .optional(None)
            .number(0)
            .number(127)
            .number(128)
            .number(u64::MAX)
            .flag(true)
            .texts(&["a".into(), "bc".into()]);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes, 7).unwrap();
        assert_eq!(r.text().as_deref(), Ok("família"));
        assert_eq!(r.optional(), Ok(Some(String::new())));
        assert_eq!(r.optional(), Ok(None));
        assert_eq!(r.number(), Ok(0));
        assert_eq!(r.number(), Ok(127));
        assert_eq!(r.number(), Ok(128));
        assert_eq!(r.number(), Ok(u64::MAX));
        assert_eq!(r.flag(), Ok(true));
        assert_eq!(r.texts(), Ok(vec!["a".to_string(), "bc".to_string()]));
        r.end().unwrap();
        // Another format byte, or none.
        assert!(Reader::new(&bytes, 8).is_err());
        assert!(Reader::new(&[], 7).is_err());
    }

    #[test]
    fn malformed_layouts_are_refused() {
        let read = |bytes: &[u8], f: fn(&mut Reader<'_>) -> bool| {
            let mut r = Reader(bytes);
            f(&mut r)
        };
        // A length past the end, invalid UTF-8.
        assert!(!read(&[5, b'a'], |r| r.text().is_ok()));
        assert!(!read(&[2, 0xff, 0xfe], |r| r.text().is_ok()));
        // Presence and flag bytes other than 0 and 1.
        assert!(!read(&[2], |r| r.optional().is_ok()));
        assert!(!read(&[2], |r| r.flag().is_ok()));
        // Numbers: cut, redundant zero bytes, beyond 64 bits.
        assert!(!read(&[0x80], |r| r.number().is_ok()));
        assert!(!read(&[0x80, 0x00], |r| r.number().is_ok()));
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(!read(&too_big, |r| r.number().is_ok()));
        let eleven = [0x80; 11];
        assert!(!read(&eleven, |r| r.number().is_ok()));
        // A count of strings larger than the bytes left.
        assert!(!read(&[3, 1, b'a'], |r| r.texts().is_ok()));
        assert!(read(&[2, 1, b'a', 0], |r| r.texts().is_ok()));
        // Trailing bytes; padding that is not zeros.
        assert_eq!(Reader(&[0]).end(), Err(Malformed));
        assert_eq!(Reader(&[0, 0]).end_padded(4, 4), Ok(()));
        assert_eq!(Reader(&[0, 1]).end_padded(4, 4), Err(Malformed));
        // Not a whole number of blocks, or a whole block of padding or more.
        assert_eq!(Reader(&[0, 0]).end_padded(5, 4), Err(Malformed));
        assert_eq!(Reader(&[0; 4]).end_padded(8, 4), Err(Malformed));
    }
}
