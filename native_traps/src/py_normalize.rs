//! Python bindings for [`crate::normalize`]: `Normalizer`, `ScanResult`,
//! `ViewFinding`, `ViewEntropyFinding`, `decompress` and `DecodeError`.
//!
//! `Normalizer.scan` builds the views and runs every trap over them in one
//! release of the GIL (ADR 0004).

use std::collections::HashSet;
use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::normalize::{
    decompress as core_decompress, leet_view_for, scan_views, DecompressLimits, NormalizeError,
    NormalizeOptions, ViewScan, Views,
};
use crate::python::{detached, PyEntropyTrap, PyFinding, PyRegexTrap, TrapError};

create_exception!(
    ext_proc._native_traps,
    DecodeError,
    TrapError,
    "A body could not be decoded: corrupt data, unknown encoding, or a size/ratio bound exceeded."
);

fn decode_err(err: &NormalizeError) -> PyErr {
    DecodeError::new_err(err.to_string())
}

/// Raise the module's `ParameterError` (a `TrapError` and `ValueError`).
fn parameter_err(py: Python<'_>, message: String) -> PyErr {
    let class = py
        .import("ext_proc._native_traps")
        .and_then(|m| m.getattr("ParameterError"));
    match class {
        Ok(class) => PyErr::from_value(class.call1((message,)).unwrap_or(class)),
        Err(_) => PyValueError::new_err(message),
    }
}

fn non_negative(py: Python<'_>, name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        parameter_err(
            py,
            format!("invalid parameter {name:?}: {value} is negative"),
        )
    })
}

fn ratio(py: Python<'_>, value: f64) -> PyResult<f64> {
    if value.is_finite() && value >= 1.0 {
        Ok(value)
    } else {
        Err(parameter_err(
            py,
            format!("invalid parameter \"max_ratio\": {value} is not a finite number >= 1"),
        ))
    }
}

/// One high-entropy token found in the raw or a decoded view, as original byte offsets.
#[pyclass(frozen, name = "ViewEntropyFinding", module = "ext_proc._native_traps")]
struct PyViewEntropyFinding {
    start: usize,
    end: usize,
    bits_per_char: f64,
    charset: &'static str,
    view: String,
}

#[pymethods]
impl PyViewEntropyFinding {
    #[getter]
    fn start(&self) -> usize {
        self.start
    }

    #[getter]
    fn end(&self) -> usize {
        self.end
    }

    #[getter]
    fn bits_per_char(&self) -> f64 {
        self.bits_per_char
    }

    /// "hex", "base64" or "alnum".
    #[getter]
    fn charset(&self) -> &'static str {
        self.charset
    }

    #[getter]
    fn view(&self) -> &str {
        &self.view
    }

    fn __repr__(&self) -> String {
        format!(
            "ViewEntropyFinding(start={}, end={}, bits_per_char={:?}, charset='{}', view='{}')",
            self.start, self.end, self.bits_per_char, self.charset, self.view
        )
    }
}

/// Findings of one `Normalizer.scan`.
#[pyclass(frozen, name = "ScanResult", module = "ext_proc._native_traps")]
struct PyScanResult {
    findings: Vec<Py<PyFinding>>,
    entropy: Vec<Py<PyViewEntropyFinding>>,
    limits_hit: Vec<&'static str>,
}

#[pymethods]
impl PyScanResult {
    /// Regex findings sorted by (start, end); one per rule id and original span.
    #[getter]
    fn findings(&self, py: Python<'_>) -> Vec<Py<PyFinding>> {
        self.findings.iter().map(|f| f.clone_ref(py)).collect()
    }

    /// Entropy findings sorted by (start, end); one per original span.
    #[getter]
    fn entropy(&self, py: Python<'_>) -> Vec<Py<PyViewEntropyFinding>> {
        self.entropy.iter().map(|f| f.clone_ref(py)).collect()
    }

    /// Names of the bounds that stopped normalisation (e.g. `decoded_bytes`, `depth`).
    #[getter]
    fn limits_hit(&self) -> Vec<&'static str> {
        self.limits_hit.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "ScanResult(<{} findings>, <{} entropy>, limits_hit={:?})",
            self.findings.len(),
            self.entropy.len(),
            self.limits_hit
        )
    }
}

fn wrap_scan(
    py: Python<'_>,
    regex: &PyRegexTrap,
    leet: Option<&PyRegexTrap>,
    scan: ViewScan,
) -> PyResult<PyScanResult> {
    let mut seen: HashSet<(String, usize, usize)> = HashSet::new();
    let mut findings = Vec::with_capacity(scan.findings.len());
    for f in scan.findings {
        let trap = if f.view == crate::normalize::ViewKind::Leet {
            leet.unwrap_or(regex)
        } else {
            regex
        };
        let Some(rule) = trap.trap.rule(f.rule_index) else {
            continue;
        };
        // The leet trap usually repeats rules of the main one: one per id.
        if !seen.insert((rule.id.clone(), f.start, f.end)) {
            continue;
        }
        findings.push(Py::new(
            py,
            PyFinding {
                rule_id: Arc::from(rule.id.as_str()),
                category: Arc::from(rule.category.as_str()),
                severity: rule.severity,
                start: f.start,
                end: f.end,
                view: f.view.name(),
            },
        )?);
    }
    let entropy = scan
        .entropy
        .into_iter()
        .map(|e| {
            Py::new(
                py,
                PyViewEntropyFinding {
                    start: e.start,
                    end: e.end,
                    bits_per_char: e.bits_per_char,
                    charset: e.charset.as_str(),
                    view: e.view.name(),
                },
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyScanResult {
        findings,
        entropy,
        limits_hit: scan.limits_hit,
    })
}

/// Builds normalised views of a body (JSON strings, percent-decoded,
/// canonical Unicode, leetspeak, decoded base64/hex) and scans them.
#[pyclass(frozen, name = "Normalizer", module = "ext_proc._native_traps")]
struct PyNormalizer {
    opts: NormalizeOptions,
}

#[pymethods]
impl PyNormalizer {
    // Keep these literals equal to `NormalizeOptions::default()`.
    #[new]
    #[pyo3(signature = (max_depth=2, max_decoded_bytes=1_048_576, min_blob_len=16, max_decompressed_bytes=16_777_216, max_ratio=100.0, min_text_blob_len=12))]
    fn new(
        py: Python<'_>,
        max_depth: i64,
        max_decoded_bytes: i64,
        min_blob_len: i64,
        max_decompressed_bytes: i64,
        max_ratio: f64,
        min_text_blob_len: i64,
    ) -> PyResult<Self> {
        let max_depth = non_negative(py, "max_depth", max_depth)?;
        if max_depth > 8 {
            return Err(parameter_err(
                py,
                format!("invalid parameter \"max_depth\": {max_depth} is outside 0..=8"),
            ));
        }
        let min_blob_len = non_negative(py, "min_blob_len", min_blob_len)?;
        if !(8..=4096).contains(&min_blob_len) {
            return Err(parameter_err(
                py,
                format!("invalid parameter \"min_blob_len\": {min_blob_len} is outside 8..=4096"),
            ));
        }
        let min_text_blob_len = non_negative(py, "min_text_blob_len", min_text_blob_len)?;
        if !(8..=4096).contains(&min_text_blob_len) {
            return Err(parameter_err(
                py,
                format!(
                    "invalid parameter \"min_text_blob_len\": {min_text_blob_len} is outside 8..=4096"
                ),
            ));
        }
        Ok(Self {
            opts: NormalizeOptions {
                max_depth,
                max_decoded_bytes: non_negative(py, "max_decoded_bytes", max_decoded_bytes)?,
                min_blob_len,
                min_text_blob_len,
                decompress: DecompressLimits {
                    max_bytes: non_negative(py, "max_decompressed_bytes", max_decompressed_bytes)?,
                    max_ratio: ratio(py, max_ratio)?,
                },
            },
        })
    }

    /// Every view of `data` as (name, bytes), raw first (for tests and
    /// debugging). With `regex` and `leet`, the traps `scan` would get, the
    /// list ends with the leet view when `scan` would build it.
    #[pyo3(signature = (data, regex=None, leet=None))]
    fn views<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        regex: Option<&Bound<'_, PyRegexTrap>>,
        leet: Option<&Bound<'_, PyRegexTrap>>,
    ) -> PyResult<Vec<(String, Bound<'py, PyBytes>)>> {
        let opts = self.opts;
        let (regex, leet) = (regex.map(Bound::get), leet.map(Bound::get));
        let (views, leet_view) = detached(py, "Normalizer.views", || {
            let views = Views::build(data, &opts);
            let leet_view = match (regex, leet) {
                (Some(regex), Some(leet)) => leet_view_for(&regex.trap, &leet.trap, &views),
                _ => None,
            };
            (views, leet_view)
        })?;
        Ok(views
            .iter()
            .chain(leet_view.iter().map(|v| (v.kind, v.bytes.as_slice())))
            .map(|(kind, bytes)| (kind.name(), PyBytes::new(py, bytes)))
            .collect())
    }

    /// Normalise `data` and run `regex` over every view, `leet` over the
    /// leetspeak view only and `entropy` over the raw and decoded views, in
    /// one release of the GIL. Spans are offsets into `data`.
    #[pyo3(signature = (regex, leet, entropy, data))]
    fn scan(
        &self,
        py: Python<'_>,
        regex: &Bound<'_, PyRegexTrap>,
        leet: Option<&Bound<'_, PyRegexTrap>>,
        entropy: Option<&Bound<'_, PyEntropyTrap>>,
        data: &[u8],
    ) -> PyResult<PyScanResult> {
        let opts = self.opts;
        let (regex, leet, entropy) = (regex.get(), leet.map(Bound::get), entropy.map(Bound::get));
        let result = detached(py, "Normalizer.scan", || {
            let views = Views::build(data, &opts);
            scan_views(
                &regex.trap,
                leet.map(|l| &l.trap),
                entropy.map(|e| &e.trap),
                &views,
            )
        })?;
        wrap_scan(py, regex, leet, result)
    }

    /// Decompress `data` (Content-Encoding gzip, deflate or br) within this
    /// normaliser's bounds; raises `DecodeError`.
    fn decompress<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        encoding: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limits = self.opts.decompress;
        let out = detached(py, "decompress", || core_decompress(data, encoding, limits))?
            .map_err(|e| decode_err(&e))?;
        Ok(PyBytes::new(py, &out))
    }

    #[getter]
    fn max_depth(&self) -> usize {
        self.opts.max_depth
    }

    #[getter]
    fn max_decoded_bytes(&self) -> usize {
        self.opts.max_decoded_bytes
    }

    #[getter]
    fn min_blob_len(&self) -> usize {
        self.opts.min_blob_len
    }

    #[getter]
    fn min_text_blob_len(&self) -> usize {
        self.opts.min_text_blob_len
    }

    #[getter]
    fn max_decompressed_bytes(&self) -> usize {
        self.opts.decompress.max_bytes
    }

    #[getter]
    fn max_ratio(&self) -> f64 {
        self.opts.decompress.max_ratio
    }

    fn __repr__(&self) -> String {
        let o = &self.opts;
        format!(
            "Normalizer(max_depth={}, max_decoded_bytes={}, min_blob_len={}, max_decompressed_bytes={}, max_ratio={:?}, min_text_blob_len={})",
            o.max_depth, o.max_decoded_bytes, o.min_blob_len, o.decompress.max_bytes, o.decompress.max_ratio, o.min_text_blob_len
        )
    }
}

/// Decompress `data` sent with Content-Encoding `encoding` (gzip, deflate,
/// br); raises `DecodeError` on corrupt data or when the output would exceed
/// `max_bytes` or `max_ratio` times the input.
#[pyfunction]
#[pyo3(signature = (data, encoding, max_bytes=16_777_216, max_ratio=100.0))]
fn decompress<'py>(
    py: Python<'py>,
    data: &[u8],
    encoding: &str,
    max_bytes: i64,
    max_ratio: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    let limits = DecompressLimits {
        max_bytes: non_negative(py, "max_bytes", max_bytes)?,
        max_ratio: ratio(py, max_ratio)?,
    };
    let out = detached(py, "decompress", || core_decompress(data, encoding, limits))?
        .map_err(|e| decode_err(&e))?;
    Ok(PyBytes::new(py, &out))
}

/// Add this file's classes, function and exception to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add_class::<PyNormalizer>()?;
    m.add_class::<PyScanResult>()?;
    m.add_class::<PyViewEntropyFinding>()?;
    m.add_function(wrap_pyfunction!(decompress, m)?)?;
    Ok(())
}
