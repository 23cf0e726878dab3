//! NumPy `.npy` arrays without pickle: headers v1–v3, both byte orders, C and Fortran order.
//!
//! Written here rather than taken from `npyz`: that crate decodes element by element through
//! `io::Read` (slow on 8 MB OCT volumes) and its errors name neither the file nor the key.
//! The header is a Python dict literal with three keys, which is all we parse.

use half::f16;

/// Why an array could not be decoded. The caller adds the file and the key ([`crate::NpzError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy array (bad magic bytes)")]
    Magic,
    #[error("npy format version {0}.{1} is not supported (1.0, 2.0 and 3.0 are)")]
    Version(u8, u8),
    #[error("truncated npy header")]
    TruncatedHeader,
    #[error("malformed npy header: {0}")]
    Header(String),
    #[error(
        "dtype '|O' holds pickled Python objects; pickled data is not loaded (save the array with a plain dtype)"
    )]
    Pickled,
    #[error("dtype '{0}' is not supported (u1 i1 i2 i4 i8 u2 u4 u8 f2 f4 f8 b1 and U are)")]
    Dtype(String),
    #[error("shape {shape:?} needs {expected} data bytes; the array has {found}")]
    Size {
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    #[error("{0}")]
    Value(String),
}

/// The element type of an array, byte order already resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    F32,
    F64,
    /// Fixed-width unicode: this many UCS-4 code points per element.
    Unicode(usize),
}

impl Dtype {
    pub fn item_size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
            Dtype::Unicode(n) => 4 * n,
        }
    }

    /// numpy's `descr` string, little-endian.
    pub fn descr(self) -> String {
        match self {
            Dtype::Bool => "|b1".into(),
            Dtype::U8 => "|u1".into(),
            Dtype::I8 => "|i1".into(),
            Dtype::I16 => "<i2".into(),
            Dtype::U16 => "<u2".into(),
            Dtype::I32 => "<i4".into(),
            Dtype::U32 => "<u4".into(),
            Dtype::I64 => "<i8".into(),
            Dtype::U64 => "<u8".into(),
            Dtype::F16 => "<f2".into(),
            Dtype::F32 => "<f4".into(),
            Dtype::F64 => "<f8".into(),
            Dtype::Unicode(n) => format!("<U{n}"),
        }
    }

    /// Parses a `descr`; the bool is true for big-endian data.
    fn parse(descr: &str) -> Result<(Dtype, bool), NpyError> {
        let unsupported = || NpyError::Dtype(descr.to_owned());
        let mut chars = descr.chars();
        let order = chars.next().ok_or_else(unsupported)?;
        let (order, rest) = match order {
            '<' | '>' | '|' | '=' => (order, chars.as_str()),
            _ => ('|', descr),
        };
        if rest.starts_with('O') {
            return Err(NpyError::Pickled);
        }
        // The kind is one character (not necessarily one byte: damaged headers hold anything).
        let (kind, size) = rest.split_at(rest.chars().next().map_or(0, char::len_utf8));
        let size: usize = size.parse().map_err(|_| unsupported())?;
        let dtype = match (kind, size) {
            ("b", 1) => Dtype::Bool,
            ("u", 1) => Dtype::U8,
            ("i", 1) => Dtype::I8,
            ("i", 2) => Dtype::I16,
            ("u", 2) => Dtype::U16,
            ("i", 4) => Dtype::I32,
            ("u", 4) => Dtype::U32,
            ("i", 8) => Dtype::I64,
            ("u", 8) => Dtype::U64,
            ("f", 2) => Dtype::F16,
            ("f", 4) => Dtype::F32,
            ("f", 8) => Dtype::F64,
            ("U", n) => Dtype::Unicode(n),
            _ => return Err(unsupported()),
        };
        Ok((dtype, order == '>'))
    }
}

/// Decoded elements, always in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Unicode(Vec<String>),
}

/// An n-dimensional array (0-d for scalars) in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

/// Shape, dtype and layout of an array, read without its data.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    pub dtype: Dtype,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Offset of the data from the start of the file.
    pub data_offset: usize,
}

impl NpyHeader {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses the header at the start of `bytes` (which may hold only the header).
    pub fn parse(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
        if bytes.len() < 10 {
            return Err(if bytes.starts_with(&b"\x93NUMPY"[..bytes.len().min(6)]) {
                NpyError::TruncatedHeader
            } else {
                NpyError::Magic
            });
        }
        if &bytes[..6] != b"\x93NUMPY" {
            return Err(NpyError::Magic);
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let (len, start) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            ),
            2 | 3 => return Err(NpyError::TruncatedHeader),
            _ => return Err(NpyError::Version(major, minor)),
        };
        let text = bytes
            .get(start..start + len)
            .ok_or(NpyError::TruncatedHeader)?;
        // v1/v2 headers are latin-1 (ASCII in practice), v3 UTF-8.
        let text: String = if major == 3 {
            String::from_utf8(text.to_vec())
                .map_err(|_| NpyError::Header("header is not UTF-8".into()))?
        } else {
            text.iter().map(|&b| b as char).collect()
        };
        let descr = dict_value(&text, "descr")?;
        let descr = descr
            .strip_prefix('\'')
            .and_then(|d| d.strip_suffix('\''))
            .ok_or_else(|| {
                if descr.starts_with('[') {
                    NpyError::Dtype(format!("structured {descr}"))
                } else {
                    NpyError::Header(format!("descr {descr} is not a string"))
                }
            })?;
        let (dtype, big_endian) = Dtype::parse(descr)?;
        let fortran_order = match dict_value(&text, "fortran_order")?.as_str() {
            "True" => true,
            "False" => false,
            other => return Err(NpyError::Header(format!("fortran_order is '{other}'"))),
        };
        let shape_text = dict_value(&text, "shape")?;
        let inner = shape_text
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| NpyError::Header(format!("shape {shape_text} is not a tuple")))?;
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim_end_matches('L').parse::<usize>().map_err(|_| {
                    NpyError::Header(format!("shape {shape_text} is not a tuple of sizes"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Checked once here, so that every later size computation fits.
        shape
            .iter()
            .try_fold(dtype.item_size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| NpyError::Header(format!("shape {shape_text} is too large")))?;
        Ok(NpyHeader {
            dtype,
            big_endian,
            fortran_order,
            shape,
            data_offset: start + len,
        })
    }
}

/// The text of `key`'s value in a Python dict literal: up to the next top-level comma or brace.
fn dict_value(text: &str, key: &str) -> Result<String, NpyError> {
    let pattern = format!("'{key}'");
    let at = text
        .find(&pattern)
        .ok_or_else(|| NpyError::Header(format!("no '{key}' in header {}", text.trim())))?;
    let rest = text[at + pattern.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| NpyError::Header(format!("no ':' after '{key}'")))?
        .trim_start();
    let mut depth = 0i32;
    let mut in_string = false;
    for (i, c) in rest.char_indices() {
        match c {
            '\'' => in_string = !in_string,
            '(' | '[' if !in_string => depth += 1,
            ')' | ']' if !in_string => depth -= 1,
            ',' | '}' if !in_string && depth == 0 => return Ok(rest[..i].trim().to_owned()),
            _ => {}
        }
    }
    Err(NpyError::Header(format!("unterminated value of '{key}'")))
}

/// Decodes `n` elements of `dtype` from `data` (which holds exactly their bytes).
pub(crate) fn decode(dtype: Dtype, be: bool, n: usize, data: &[u8]) -> Result<ArrayData, NpyError> {
    macro_rules! numbers {
        ($t:ty, $variant:ident) => {{
            const W: usize = std::mem::size_of::<$t>();
            ArrayData::$variant(
                data.chunks_exact(W)
                    .map(|c| {
                        let b: [u8; W] = c.try_into().unwrap();
                        if be {
                            <$t>::from_be_bytes(b)
                        } else {
                            <$t>::from_le_bytes(b)
                        }
                    })
                    .collect(),
            )
        }};
    }
    let values = match dtype {
        Dtype::Bool => ArrayData::Bool(data.iter().map(|&b| b != 0).collect()),
        Dtype::U8 => ArrayData::U8(data.to_vec()),
        Dtype::I8 => ArrayData::I8(data.iter().map(|&b| b as i8).collect()),
        Dtype::I16 => numbers!(i16, I16),
        Dtype::U16 => numbers!(u16, U16),
        Dtype::I32 => numbers!(i32, I32),
        Dtype::U32 => numbers!(u32, U32),
        Dtype::I64 => numbers!(i64, I64),
        Dtype::U64 => numbers!(u64, U64),
        Dtype::F16 => numbers!(f16, F16),
        Dtype::F32 => numbers!(f32, F32),
        Dtype::F64 => numbers!(f64, F64),
        Dtype::Unicode(width) => {
            let mut strings = Vec::with_capacity(n);
            for element in data.chunks_exact(4 * width.max(1)).take(n) {
                let mut s = String::new();
                for c in element.chunks_exact(4) {
                    let b: [u8; 4] = c.try_into().unwrap();
                    let code = if be {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    };
                    if code == 0 {
                        break; // numpy pads with trailing NULs
                    }
                    s.push(char::from_u32(code).ok_or_else(|| {
                        NpyError::Value(format!("invalid unicode code point {code:#x}"))
                    })?);
                }
                strings.push(s);
            }
            // `<U0` stores no bytes per element: every element is the empty string.
            strings.resize(n, String::new());
            ArrayData::Unicode(strings)
        }
    };
    Ok(values)
}

impl NpyArray {
    /// Decodes a whole `.npy` file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<NpyArray, NpyError> {
        let header = NpyHeader::parse(bytes)?;
        let data = &bytes[header.data_offset..];
        let n = header.len();
        let expected = n * header.dtype.item_size();
        if data.len() != expected {
            return Err(NpyError::Size {
                shape: header.shape,
                expected,
                found: data.len(),
            });
        }
        let mut values = decode(header.dtype, header.big_endian, n, data)?;
        if header.fortran_order && header.shape.len() > 1 {
            values = values.fortran_to_c(&header.shape);
        }
        Ok(NpyArray {
            shape: header.shape,
            data: values,
        })
    }

    /// Encodes as a version 1.0, little-endian, C-order `.npy` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let dtype = self.data.dtype();
        let shape = match self.shape.len() {
            0 => "()".to_owned(),
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            dtype.descr()
        );
        // numpy pads the header with spaces and a newline so the data starts 64-byte aligned.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.len() * dtype.item_size());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        self.data.write_le(dtype, &mut out);
        out
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> Dtype {
        self.data.dtype()
    }

    /// Every element as f32 (numeric and bool arrays).
    pub fn to_f32(&self) -> Result<Vec<f32>, NpyError> {
        let v = match &self.data {
            ArrayData::Bool(v) => v.iter().map(|&b| b as u8 as f32).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U16(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U32(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::F16(v) => v.iter().map(|&x| x.to_f32()).collect(),
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::Unicode(_) => {
                return Err(NpyError::Value(
                    "a unicode array has no numeric values".into(),
                ));
            }
        };
        Ok(v)
    }

    /// The single value of a 0-d (or one-element) array as an integer; floats must be whole.
    pub fn scalar_i64(&self) -> Result<i64, NpyError> {
        if self.len() != 1 {
            return Err(NpyError::Value(format!(
                "expected a scalar, found shape {:?}",
                self.shape
            )));
        }
        let float = |x: f64| {
            if x.fract() == 0.0 && x.is_finite() {
                Ok(x as i64)
            } else {
                Err(NpyError::Value(format!(
                    "expected an integer code, found {x}"
                )))
            }
        };
        match &self.data {
            ArrayData::Bool(v) => Ok(v[0] as i64),
            ArrayData::U8(v) => Ok(v[0] as i64),
            ArrayData::I8(v) => Ok(v[0] as i64),
            ArrayData::I16(v) => Ok(v[0] as i64),
            ArrayData::U16(v) => Ok(v[0] as i64),
            ArrayData::I32(v) => Ok(v[0] as i64),
            ArrayData::U32(v) => Ok(v[0] as i64),
            ArrayData::I64(v) => Ok(v[0]),
            ArrayData::U64(v) => i64::try_from(v[0])
                .map_err(|_| NpyError::Value(format!("{} does not fit an i64", v[0]))),
            ArrayData::F16(v) => float(v[0].to_f64()),
            ArrayData::F32(v) => float(v[0] as f64),
            ArrayData::F64(v) => float(v[0]),
            ArrayData::Unicode(v) => Err(NpyError::Value(format!(
                "expected an integer code, found the string '{}'",
                v[0]
            ))),
        }
    }

    /// The single string of a 0-d unicode array.
    pub fn scalar_str(&self) -> Result<&str, NpyError> {
        match &self.data {
            ArrayData::Unicode(v) if v.len() == 1 => Ok(&v[0]),
            _ => Err(NpyError::Value(format!(
                "expected a 0-d unicode string, found {} with shape {:?}",
                self.dtype().descr(),
                self.shape
            ))),
        }
    }
}

impl ArrayData {
    pub fn dtype(&self) -> Dtype {
        match self {
            ArrayData::Bool(_) => Dtype::Bool,
            ArrayData::U8(_) => Dtype::U8,
            ArrayData::I8(_) => Dtype::I8,
            ArrayData::I16(_) => Dtype::I16,
            ArrayData::U16(_) => Dtype::U16,
            ArrayData::I32(_) => Dtype::I32,
            ArrayData::U32(_) => Dtype::U32,
            ArrayData::I64(_) => Dtype::I64,
            ArrayData::U64(_) => Dtype::U64,
            ArrayData::F16(_) => Dtype::F16,
            ArrayData::F32(_) => Dtype::F32,
            ArrayData::F64(_) => Dtype::F64,
            ArrayData::Unicode(v) => Dtype::Unicode(
                v.iter()
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(1),
            ),
        }
    }

    fn write_le(&self, dtype: Dtype, out: &mut Vec<u8>) {
        macro_rules! le {
            ($v:expr) => {
                for x in $v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            };
        }
        match self {
            ArrayData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            ArrayData::U8(v) => out.extend_from_slice(v),
            ArrayData::I8(v) => le!(v),
            ArrayData::I16(v) => le!(v),
            ArrayData::U16(v) => le!(v),
            ArrayData::I32(v) => le!(v),
            ArrayData::U32(v) => le!(v),
            ArrayData::I64(v) => le!(v),
            ArrayData::U64(v) => le!(v),
            ArrayData::F16(v) => le!(v),
            ArrayData::F32(v) => le!(v),
            ArrayData::F64(v) => le!(v),
            ArrayData::Unicode(v) => {
                let Dtype::Unicode(width) = dtype else {
                    unreachable!()
                };
                for s in v {
                    let mut n = 0;
                    for c in s.chars() {
                        out.extend_from_slice(&(c as u32).to_le_bytes());
                        n += 1;
                    }
                    out.extend(std::iter::repeat_n(0u8, 4 * (width - n)));
                }
            }
        }
    }

    /// Reorders Fortran-order (column-major) elements into C order.
    fn fortran_to_c(self, shape: &[usize]) -> ArrayData {
        fn reorder<T: Clone>(v: Vec<T>, shape: &[usize]) -> Vec<T> {
            let n = v.len();
            // Column-major strides of each axis.
            let mut strides = vec![1usize; shape.len()];
            for k in 1..shape.len() {
                strides[k] = strides[k - 1] * shape[k - 1];
            }
            let mut index = vec![0usize; shape.len()];
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(
                    v[index
                        .iter()
                        .zip(&strides)
                        .map(|(i, s)| i * s)
                        .sum::<usize>()]
                    .clone(),
                );
                // Advance the C-order multi-index (last axis fastest).
                for k in (0..shape.len()).rev() {
                    index[k] += 1;
                    if index[k] < shape[k] {
                        break;
                    }
                    index[k] = 0;
                }
            }
            out
        }
        match self {
            ArrayData::Bool(v) => ArrayData::Bool(reorder(v, shape)),
            ArrayData::U8(v) => ArrayData::U8(reorder(v, shape)),
            ArrayData::I8(v) => ArrayData::I8(reorder(v, shape)),
            ArrayData::I16(v) => ArrayData::I16(reorder(v, shape)),
            ArrayData::U16(v) => ArrayData::U16(reorder(v, shape)),
            ArrayData::I32(v) => ArrayData::I32(reorder(v, shape)),
            ArrayData::U32(v) => ArrayData::U32(reorder(v, shape)),
            ArrayData::I64(v) => ArrayData::I64(reorder(v, shape)),
            ArrayData::U64(v) => ArrayData::U64(reorder(v, shape)),
            ArrayData::F16(v) => ArrayData::F16(reorder(v, shape)),
            ArrayData::F32(v) => ArrayData::F32(reorder(v, shape)),
            ArrayData::F64(v) => ArrayData::F64(reorder(v, shape)),
            ArrayData::Unicode(v) => ArrayData::Unicode(reorder(v, shape)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(array: NpyArray) {
        assert_eq!(NpyArray::parse(&array.to_bytes()).unwrap(), array);
    }

    #[test]
    fn roundtrips_every_dtype() {
        roundtrip(NpyArray {
            shape: vec![2, 2],
            data: ArrayData::U8(vec![0, 1, 254, 255]),
        });
        roundtrip(NpyArray {
            shape: vec![3],
            data: ArrayData::I16(vec![-3, 0, 300]),
        });
        roundtrip(NpyArray {
            shape: vec![],
            data: ArrayData::I64(vec![-1]),
        });
        roundtrip(NpyArray {
            shape: vec![2],
            data: ArrayData::F16(vec![f16::from_f32(0.5); 2]),
        });
        roundtrip(NpyArray {
            shape: vec![1, 2],
            data: ArrayData::F64(vec![1.5, -2.25]),
        });
        roundtrip(NpyArray {
            shape: vec![2],
            data: ArrayData::Bool(vec![true, false]),
        });
        roundtrip(NpyArray {
            shape: vec![],
            data: ArrayData::Unicode(vec!["glaucoma suspect, ëye".into()]),
        });
    }

    #[test]
    fn header_is_64_byte_aligned() {
        let bytes = NpyArray {
            shape: vec![5],
            data: ArrayData::U8(vec![1; 5]),
        }
        .to_bytes();
        assert_eq!(NpyHeader::parse(&bytes).unwrap().data_offset % 64, 0);
    }

    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn big_endian_and_fortran_order() {
        let be = with_header(
            "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }",
            &[0, 0, 1, 2, 0xff, 0xff, 0xff, 0xfe],
        );
        assert_eq!(
            NpyArray::parse(&be).unwrap().data,
            ArrayData::I32(vec![258, -2])
        );
        // [[1, 2, 3], [4, 5, 6]] stored column by column.
        let f = with_header(
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }",
            &[1, 4, 2, 5, 3, 6],
        );
        assert_eq!(
            NpyArray::parse(&f).unwrap().data,
            ArrayData::U8(vec![1, 2, 3, 4, 5, 6])
        );
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let object = with_header(
            "{'descr': '|O', 'fortran_order': False, 'shape': (), }",
            &[0x80],
        );
        assert_eq!(NpyArray::parse(&object), Err(NpyError::Pickled));
        assert_eq!(NpyArray::parse(b"PK\x03\x04 not npy"), Err(NpyError::Magic));
        assert_eq!(NpyArray::parse(b"\x93NUM"), Err(NpyError::TruncatedHeader));
        let short = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &[0; 8],
        );
        assert_eq!(
            NpyArray::parse(&short),
            Err(NpyError::Size {
                shape: vec![3],
                expected: 12,
                found: 8
            })
        );
        let complex = with_header(
            "{'descr': '<c8', 'fortran_order': False, 'shape': (), }",
            &[0; 8],
        );
        assert_eq!(
            NpyArray::parse(&complex),
            Err(NpyError::Dtype("<c8".into()))
        );
        let mut truncated = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &[],
        );
        truncated.truncate(30);
        assert_eq!(NpyArray::parse(&truncated), Err(NpyError::TruncatedHeader));
        let bad = with_header(
            "{'descr': '<f4', 'fortran_order': maybe, 'shape': (3,), }",
            &[],
        );
        assert!(matches!(NpyArray::parse(&bad), Err(NpyError::Header(_))));
        let mut v9 = with_header("{}", &[]);
        v9[6] = 9;
        assert_eq!(NpyArray::parse(&v9), Err(NpyError::Version(9, 0)));
    }

    #[test]
    fn scalars() {
        let code = NpyArray {
            shape: vec![],
            data: ArrayData::F64(vec![2.0]),
        };
        assert_eq!(code.scalar_i64(), Ok(2));
        let half = NpyArray {
            shape: vec![],
            data: ArrayData::F64(vec![2.5]),
        };
        assert!(half.scalar_i64().is_err());
        let text = NpyArray {
            shape: vec![],
            data: ArrayData::Unicode(vec!["White".into()]),
        };
        assert_eq!(text.scalar_str(), Ok("White"));
        assert!(text.scalar_i64().is_err());
    }
}
