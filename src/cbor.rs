//! Strict deterministic CBOR (RFC 8949 section 4.2.1).
//!
//! Everything nnsign signs is encoded here, and everything it reads back is decoded here, so that
//! one artifact has exactly one valid encoding: a reader that accepted two encodings of the same
//! manifest would let bytes change without the meaning changing, and every byte of an artifact
//! must be accounted for. `ciborium` supplies the value tree and the serde bridge; it does not
//! reject non-canonical input, which is why the decoder is ours.
//!
//! The decoder checks every length against the bytes that remain before it allocates, caps nesting
//! depth and the total number of items, and rejects indefinite lengths, non-shortest heads,
//! unsorted or duplicate map keys, invalid UTF-8, undefined and other simple values, and trailing
//! bytes.

use ciborium::value::{Integer, Value};
use serde::Serialize;

/// Why a CBOR item was refused. `offset` is the byte offset in the decoded buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ended inside an item.
    #[error("CBOR ends early at byte {offset}")]
    Truncated { offset: usize },
    /// An encoding that RFC 8949 section 4.2 does not allow in deterministic CBOR.
    #[error("non-canonical CBOR at byte {offset}: {what}")]
    NonCanonical { offset: usize, what: &'static str },
    /// Well-formed CBOR that nnsign never writes (tags in the wrong place, undefined, ...).
    #[error("unsupported CBOR at byte {offset}: {what}")]
    Unsupported { offset: usize, what: &'static str },
    /// The same key twice in one map.
    #[error("duplicate map key at byte {offset}")]
    DuplicateKey { offset: usize },
    /// Nesting or item count beyond the caps.
    #[error("CBOR nesting or size limit exceeded at byte {offset}: {what}")]
    Limit { offset: usize, what: &'static str },
    /// Bytes after the single top-level item.
    #[error("{count} trailing bytes after the CBOR item")]
    Trailing { count: usize },
    /// The value tree does not have the shape a structure needs.
    #[error("{0}")]
    Shape(String),
}

/// Deepest nesting of arrays, maps and tags accepted (`MAX_CBOR_DEPTH` in docs/FORMAT.md).
pub const MAX_CBOR_DEPTH: usize = 32;
/// Most data items one decoded structure may hold (`MAX_CBOR_ITEMS` in docs/FORMAT.md).
pub const MAX_CBOR_ITEMS: usize = 1 << 22;

/// Decodes exactly one deterministic CBOR item that spans all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder {
        buf: bytes,
        pos: 0,
        items: 0,
    };
    let value = d.item(0)?;
    if d.pos != bytes.len() {
        return Err(CborError::Trailing {
            count: bytes.len() - d.pos,
        });
    }
    Ok(value)
}

/// A serde mapping error as a readable message (ciborium's Display shows its Debug form).
pub fn shape_error(e: ciborium::value::Error) -> CborError {
    match e {
        ciborium::value::Error::Custom(msg) => CborError::Shape(msg),
    }
}

/// Encodes `value` deterministically: shortest heads, definite lengths, map keys sorted by their
/// encoded bytes. Fails only on a map with two equal keys, which our own types never produce.
pub fn encode(value: &Value) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// Serializes `value` with serde and encodes the result deterministically.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    let tree = Value::serialized(value).map_err(shape_error)?;
    encode(&tree)
}

/// A cursor over a buffer of deterministic CBOR for reading a fixed shape item by item, so that
/// the outer frame of an artifact can be checked with explicit caps before anything inside it is
/// decoded.
pub struct Reader<'a> {
    d: Decoder<'a>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            d: Decoder {
                buf,
                pos: 0,
                items: 0,
            },
        }
    }

    fn expect(&mut self, major: u8, what: &str) -> Result<u64, CborError> {
        let offset = self.d.pos;
        let (m, _, arg) = self.d.head()?;
        if m != major {
            return Err(CborError::Shape(format!(
                "expected {what} at byte {offset}"
            )));
        }
        Ok(arg)
    }

    /// An array head; returns its element count, checked against the bytes left.
    pub fn array(&mut self) -> Result<usize, CborError> {
        let offset = self.d.pos;
        let arg = self.expect(4, "an array")?;
        self.d.length(arg, 1, offset)
    }

    /// A map head; returns its entry count, checked against the bytes left.
    pub fn map(&mut self) -> Result<usize, CborError> {
        let offset = self.d.pos;
        let arg = self.expect(5, "a map")?;
        self.d.length(arg, 2, offset)
    }

    /// A tag number.
    pub fn tag(&mut self) -> Result<u64, CborError> {
        self.expect(6, "a tag")
    }

    /// A byte string of at most `max` bytes, borrowed from the buffer.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], CborError> {
        let offset = self.d.pos;
        let arg = self.expect(2, what)?;
        if arg > max as u64 {
            return Err(CborError::Limit { offset, what });
        }
        let n = self.d.length(arg, 1, offset)?;
        let start = self.d.pos;
        self.d.take(n)?;
        Ok(&self.d.buf[start..start + n])
    }

    /// The simple value null.
    pub fn null(&mut self) -> Result<(), CborError> {
        let offset = self.d.pos;
        // Exactly f6: the head reader does not check widths for major type 7 (floats carry
        // bits there), and f8 16 or f9 0016 would be other encodings of the same null.
        match self.d.take(1)? {
            [0xf6] => Ok(()),
            _ => Err(CborError::Shape(format!(
                "expected null (f6) at byte {offset}"
            ))),
        }
    }

    /// Ends the read: any byte left over is an error.
    pub fn finish(self) -> Result<(), CborError> {
        match self.d.remaining() {
            0 => Ok(()),
            count => Err(CborError::Trailing { count }),
        }
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    items: usize,
}

impl Decoder<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(CborError::Truncated { offset: start })?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    /// Reads an initial byte and its argument, insisting on the shortest form.
    fn head(&mut self) -> Result<(u8, u8, u64), CborError> {
        let offset = self.pos;
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let raw = self.take(n)?;
                let value = raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                // Floats (major 7) carry bits, not lengths; their width is checked separately.
                if major != 7 {
                    let minimal = match info {
                        24 => value >= 24,
                        25 => value > 0xff,
                        26 => value > 0xffff,
                        _ => value > 0xffff_ffff,
                    };
                    if !minimal {
                        return Err(CborError::NonCanonical {
                            offset,
                            what: "integer or length not in its shortest form",
                        });
                    }
                }
                value
            }
            28..=30 => {
                return Err(CborError::Unsupported {
                    offset,
                    what: "reserved additional information",
                })
            }
            _ => {
                return Err(CborError::NonCanonical {
                    offset,
                    what: "indefinite length",
                })
            }
        };
        Ok((major, info, arg))
    }

    fn count_item(&mut self, offset: usize) -> Result<(), CborError> {
        self.items += 1;
        if self.items > MAX_CBOR_ITEMS {
            return Err(CborError::Limit {
                offset,
                what: "too many items",
            });
        }
        Ok(())
    }

    /// A declared length or element count, checked against what is left so that a claim of
    /// 2^60 elements is refused before anything is allocated for it.
    fn length(&self, arg: u64, min_bytes_each: usize, offset: usize) -> Result<usize, CborError> {
        let n = usize::try_from(arg).map_err(|_| CborError::Truncated { offset })?;
        if n.saturating_mul(min_bytes_each) > self.remaining() {
            return Err(CborError::Truncated { offset });
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let offset = self.pos;
        if depth > MAX_CBOR_DEPTH {
            return Err(CborError::Limit {
                offset,
                what: "nesting too deep",
            });
        }
        self.count_item(offset)?;
        let (major, info, arg) = self.head()?;
        Ok(match major {
            0 => Value::Integer(Integer::from(arg)),
            1 => Value::Integer(
                Integer::try_from(-1i128 - i128::from(arg))
                    .map_err(|_| CborError::Shape("negative integer out of range".into()))?,
            ),
            2 => {
                let n = self.length(arg, 1, offset)?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.length(arg, 1, offset)?;
                let raw = self.take(n)?;
                let text = std::str::from_utf8(raw).map_err(|_| CborError::Unsupported {
                    offset,
                    what: "text string is not valid UTF-8",
                })?;
                Value::Text(text.to_owned())
            }
            4 => {
                let n = self.length(arg, 1, offset)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.length(arg, 2, offset)?;
                let mut entries: Vec<(Value, Value)> = Vec::with_capacity(n);
                let mut previous_key: Option<&[u8]> = None;
                for _ in 0..n {
                    let key_start = self.pos;
                    let key = self.item(depth + 1)?;
                    let key_bytes = &self.buf[key_start..self.pos];
                    if let Some(prev) = previous_key {
                        match prev.cmp(key_bytes) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(CborError::DuplicateKey { offset: key_start })
                            }
                            std::cmp::Ordering::Greater => {
                                return Err(CborError::NonCanonical {
                                    offset: key_start,
                                    what: "map keys not in bytewise order",
                                })
                            }
                        }
                    }
                    previous_key = Some(key_bytes);
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            // nnsign's structures have no tags except the COSE_Sign1 tag, which the envelope
            // reader handles itself; allowing others would allow a second encoding of a value
            // (a bignum for a small integer, say).
            6 => {
                return Err(CborError::Unsupported {
                    offset,
                    what: "tags are not allowed here",
                })
            }
            _ => self.simple(info, arg, offset)?,
        })
    }

    fn simple(&mut self, info: u8, arg: u64, offset: usize) -> Result<Value, CborError> {
        let non_canonical = |what| CborError::NonCanonical { offset, what };
        match info {
            20 => Ok(Value::Bool(false)),
            21 => Ok(Value::Bool(true)),
            22 => Ok(Value::Null),
            25 => {
                let value = half::f16::from_bits(arg as u16).to_f64();
                if value.is_nan() && arg != 0x7e00 {
                    return Err(non_canonical("NaN not encoded as f97e00"));
                }
                Ok(Value::Float(value))
            }
            26 => {
                let value = f64::from(f32::from_bits(arg as u32));
                if value.is_nan() || float_width(value) != 4 {
                    return Err(non_canonical("float not in its shortest form"));
                }
                Ok(Value::Float(value))
            }
            27 => {
                let value = f64::from_bits(arg);
                if value.is_nan() || float_width(value) != 8 {
                    return Err(non_canonical("float not in its shortest form"));
                }
                Ok(Value::Float(value))
            }
            _ => Err(CborError::Unsupported {
                offset,
                what: "simple value other than false, true or null",
            }),
        }
    }
}

/// Bytes (2, 4 or 8) of the shortest IEEE 754 form that keeps `value` exactly.
fn float_width(value: f64) -> usize {
    if value.is_nan() || half::f16::from_f64(value).to_f64() == value {
        2
    } else if f64::from(value as f32) == value {
        4
    } else {
        8
    }
}

fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CborError> {
    match value {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 {
                write_head(out, 0, i as u64);
            } else {
                write_head(out, 1, (-1 - i) as u64);
            }
        }
        Value::Bytes(b) => {
            write_head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            write_head(out, 3, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                write_value(out, item)?;
            }
        }
        Value::Map(entries) => {
            let mut encoded = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let mut key = Vec::new();
                write_value(&mut key, k)?;
                encoded.push((key, v));
            }
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            if encoded.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(CborError::DuplicateKey { offset: out.len() });
            }
            write_head(out, 5, encoded.len() as u64);
            for (key, v) in encoded {
                out.extend_from_slice(&key);
                write_value(out, v)?;
            }
        }
        Value::Tag(tag, inner) => {
            write_head(out, 6, *tag);
            write_value(out, inner)?;
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Float(f) => match float_width(*f) {
            2 if f.is_nan() => out.extend_from_slice(&[0xf9, 0x7e, 0x00]),
            2 => {
                out.push(0xf9);
                out.extend_from_slice(&half::f16::from_f64(*f).to_bits().to_be_bytes());
            }
            4 => {
                out.push(0xfa);
                out.extend_from_slice(&(*f as f32).to_bits().to_be_bytes());
            }
            _ => {
                out.push(0xfb);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
        },
        _ => {
            return Err(CborError::Unsupported {
                offset: out.len(),
                what: "value kind nnsign does not write",
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn round_trips_rfc8949_appendix_a_examples() {
        for h in [
            "00",
            "17",
            "1818",
            "1903e8",
            "1a000f4240",
            "1b000000e8d4a51000",
            "20",
            "3903e7",
            "f90000",
            "f93c00",
            "fa47c35000",
            "fb3ff199999999999a",
            "f97e00",
            "f4",
            "f5",
            "f6",
            "40",
            "4401020304",
            "60",
            "6449455446",
            "80",
            "83010203",
            "a0",
            "a201020304",
        ] {
            let bytes = hex(h);
            let value = decode(&bytes).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(encode(&value).unwrap(), bytes, "{h}");
        }
    }

    #[test]
    fn rejects_non_canonical_forms() {
        for (h, why) in [
            ("1817", "one-byte head for 23"),
            ("190001", "two-byte head for 1"),
            ("5f4101ff", "indefinite bstr"),
            ("9f01ff", "indefinite array"),
            ("a202030102", "unsorted keys"),
            ("fa3f800000", "1.0 as f32"),
            ("fb3ff0000000000000", "1.0 as f64"),
            ("f97e01", "non-canonical NaN"),
        ] {
            assert!(decode(&hex(h)).is_err(), "{why} accepted");
        }
    }

    #[test]
    fn rejects_duplicates_trailing_and_bombs() {
        assert!(matches!(
            decode(&hex("a201020103")),
            Err(CborError::DuplicateKey { .. })
        ));
        assert_eq!(decode(&hex("0000")), Err(CborError::Trailing { count: 1 }));
        // An array claiming 2^32 elements in 9 bytes must fail before allocating.
        assert!(matches!(
            decode(&hex("9b0000000100000000")),
            Err(CborError::Truncated { .. })
        ));
        let deep = vec![0x81u8; MAX_CBOR_DEPTH + 2];
        assert!(matches!(decode(&deep), Err(CborError::Limit { .. })));
        assert!(decode(&hex("f7")).is_err(), "undefined accepted");
        assert!(decode(&hex("c11a514b67b0")).is_err(), "tag accepted");
        assert!(
            decode(&hex("c249010000000000000000")).is_err(),
            "bignum accepted"
        );
        assert!(decode(&hex("62c328")).is_err(), "invalid UTF-8 accepted");
    }

    #[test]
    fn encoder_sorts_map_keys_bytewise() {
        let map = Value::Map(vec![
            (Value::Text("bb".into()), Value::Integer(1.into())),
            (Value::Text("a".into()), Value::Integer(2.into())),
            (Value::Integer((-1).into()), Value::Integer(3.into())),
        ]);
        // 0x20 (-1) < 0x61 ("a") < 0x62 ("bb"): shorter text keys sort first.
        assert_eq!(encode(&map).unwrap(), hex("a3200361610262626201"));
        // rejected: an encoder is never asked to write two equal keys.
        let dup = Value::Map(vec![
            (Value::Integer(1.into()), Value::Null),
            (Value::Integer(1.into()), Value::Null),
        ]);
        assert!(encode(&dup).is_err());
    }
}
