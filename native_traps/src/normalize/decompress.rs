//! Bounded decompression of `Content-Encoding: gzip | deflate | br` bodies.

use std::io::Read;

use super::NormalizeError;

/// Default absolute cap on decompressed output (16 MiB).
pub const DEFAULT_MAX_DECOMPRESSED: usize = 16 << 20;
/// Default cap on output / input size.
pub const DEFAULT_MAX_RATIO: f64 = 100.0;
/// The ratio cap applies only past this much output, so tiny, highly
/// repetitive bodies (a 300-byte gzip of 40 KiB of JSON) still decode.
pub const RATIO_FLOOR: usize = 64 << 10;

/// Decompression bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecompressLimits {
    /// Absolute output cap in bytes.
    pub max_bytes: usize,
    /// Output may not exceed `max_ratio * input` (beyond [`RATIO_FLOOR`]).
    pub max_ratio: f64,
}

impl Default for DecompressLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_DECOMPRESSED,
            max_ratio: DEFAULT_MAX_RATIO,
        }
    }
}

/// Read `reader` to the end while enforcing `limits` for an input of
/// `input_len` bytes. Stops reading as soon as a bound is crossed.
fn read_bounded(
    mut reader: impl Read,
    input_len: usize,
    encoding: &str,
    limits: DecompressLimits,
) -> Result<Vec<u8>, NormalizeError> {
    // `as` on purpose: the float product may be huge or fractional; the
    // saturating cast clamps it into usize.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let ratio_cap = (limits.max_ratio * input_len as f64) as usize;
    let ratio_cap = ratio_cap.max(RATIO_FLOOR);
    let cap = limits.max_bytes.min(ratio_cap);
    let mut out = Vec::with_capacity(input_len.saturating_mul(4).min(cap).min(1 << 20));
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(NormalizeError::Corrupt {
                    encoding: encoding.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        if out.len() + n > cap {
            return Err(if cap == limits.max_bytes {
                NormalizeError::TooLarge {
                    limit: limits.max_bytes,
                }
            } else {
                NormalizeError::Ratio {
                    max_ratio: limits.max_ratio,
                }
            });
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Decompress `body` sent with `Content-Encoding: encoding` (`gzip`,
/// `x-gzip`, `deflate` — zlib-wrapped or raw — or `br`), case-insensitive.
///
/// # Errors
/// [`NormalizeError::UnknownEncoding`], [`NormalizeError::Corrupt`] for data
/// that does not decode, [`NormalizeError::TooLarge`] or
/// [`NormalizeError::Ratio`] when the output would cross a bound (reading
/// stops there; memory stays bounded).
pub fn decompress(
    body: &[u8],
    encoding: &str,
    limits: DecompressLimits,
) -> Result<Vec<u8>, NormalizeError> {
    let enc = encoding.trim().to_ascii_lowercase();
    match enc.as_str() {
        "gzip" | "x-gzip" => read_bounded(
            flate2::read::MultiGzDecoder::new(body),
            body.len(),
            &enc,
            limits,
        ),
        "deflate" => {
            // RFC 9110 "deflate" is zlib-wrapped; some clients send raw
            // deflate. A zlib header has CMF 0x?8 and (CMF*256+FLG) % 31 == 0.
            let zlib = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib {
                read_bounded(
                    flate2::read::ZlibDecoder::new(body),
                    body.len(),
                    &enc,
                    limits,
                )
            } else {
                read_bounded(
                    flate2::read::DeflateDecoder::new(body),
                    body.len(),
                    &enc,
                    limits,
                )
            }
        }
        "br" => read_bounded(
            brotli_decompressor::Decompressor::new(body, 4096),
            body.len(),
            &enc,
            limits,
        ),
        "identity" | "" => {
            if body.len() > limits.max_bytes {
                Err(NormalizeError::TooLarge {
                    limit: limits.max_bytes,
                })
            } else {
                Ok(body.to_vec())
            }
        }
        _ => Err(NormalizeError::UnknownEncoding(encoding.to_owned())),
    }
}
