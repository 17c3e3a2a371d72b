//! Python bindings: the extension module `ext_proc._native_traps`.
//!
//! This is the only file that uses `PyO3`. Scans copy nothing: the input
//! `bytes` object is borrowed (it is immutable and kept alive by the caller)
//! and the GIL is released with `py.detach` while the Rust scan runs, so
//! concurrent requests in other Python threads make progress meanwhile.

use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyMapping, PyTuple, PyType};

use crate::entropy::{Charset, EntropyFinding, EntropyThresholds, EntropyTrap};
use crate::error::TrapError as CoreError;
use crate::regex_trap::{CompileOptions, Finding, RegexTrap};
use crate::rule::{RuleSpec, Severity, Validator};

const MODULE: &str = "ext_proc._native_traps";

create_exception!(
    ext_proc._native_traps,
    TrapError,
    PyException,
    "Base class of every error raised by ext_proc._native_traps."
);
create_exception!(
    ext_proc._native_traps,
    InternalError,
    TrapError,
    "A bug in the native traps (a Rust panic) stopped the call; the input is not at fault and the module stays usable."
);
create_exception!(
    ext_proc._native_traps,
    RuleError,
    TrapError,
    "A regex rule is invalid: bad field, unknown key, duplicate id or a pattern that does not compile."
);

/// Run `f` with the GIL released. A panic in it (a bug; no input should
/// cause one) becomes [`InternalError`], an ordinary `Exception` that the
/// server's handlers catch, instead of `pyo3`'s `PanicException`, which
/// derives from `BaseException` and would pass through `except Exception`.
/// The traps are immutable and the regex engine's scratch space is reset
/// before each search, so nothing a panic interrupts is seen again
/// half-done (hence `AssertUnwindSafe`).
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    what: &str,
    f: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
        .map_err(|_| InternalError::new_err(format!("{what}: internal error in the native traps")))
}

/// `ParameterError(TrapError, ValueError)`: `create_exception!` supports a
/// single base, so this class is made at import time with `type()`.
static PARAMETER_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn parameter_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    PARAMETER_ERROR
        .get_or_try_init(py, || -> PyResult<Py<PyType>> {
            let bases = PyTuple::new(
                py,
                [py.get_type::<TrapError>(), py.get_type::<PyValueError>()],
            )?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", MODULE)?;
            namespace.set_item(
                "__doc__",
                "An EntropyTrap parameter is out of range (also a ValueError).",
            )?;
            let class = py
                .get_type::<PyType>()
                .call1(("ParameterError", bases, namespace))?;
            Ok(class.cast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py))
}

/// Map a core error onto the Python exception hierarchy.
fn to_py_err(py: Python<'_>, err: &CoreError) -> PyErr {
    let message = err.to_string();
    match err {
        CoreError::InvalidRule { .. } | CoreError::InvalidPattern { .. } => {
            RuleError::new_err(message)
        }
        CoreError::InvalidParameter { .. } => match parameter_error_type(py) {
            Ok(class) => PyErr::from_type(class.clone(), message),
            Err(e) => e,
        },
    }
}

/// One regex-rule match, as byte offsets into the scanned `bytes` (for a
/// normalised scan, into the original body, with the view it was made in).
#[pyclass(frozen, name = "Finding", module = "ext_proc._native_traps")]
pub(crate) struct PyFinding {
    pub(crate) rule_id: Arc<str>,
    pub(crate) category: Arc<str>,
    pub(crate) severity: Severity,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) view: String,
}

#[pymethods]
impl PyFinding {
    #[getter]
    fn rule_id(&self) -> &str {
        &self.rule_id
    }

    #[getter]
    fn category(&self) -> &str {
        &self.category
    }

    /// Lowercase severity name: critical, error, warning or notice.
    #[getter]
    fn severity(&self) -> &'static str {
        self.severity.as_str()
    }

    /// Anomaly-score weight of the severity (5/4/3/2).
    #[getter]
    fn weight(&self) -> u32 {
        self.severity.weight()
    }

    #[getter]
    fn start(&self) -> usize {
        self.start
    }

    #[getter]
    fn end(&self) -> usize {
        self.end
    }

    /// View the match was made in: raw, json, unescaped, percent, canonical, tags, leet,
    /// decoded1, …
    #[getter]
    fn view(&self) -> &str {
        &self.view
    }

    fn __repr__(&self) -> String {
        format!(
            "Finding(rule_id='{}', category='{}', severity='{}', start={}, end={}, view='{}')",
            self.rule_id,
            self.category,
            self.severity.as_str(),
            self.start,
            self.end,
            self.view
        )
    }
}

/// Keys accepted in a rule mapping.
const RULE_KEYS: [&str; 10] = [
    "id",
    "category",
    "severity",
    "pattern",
    "keywords",
    "validator",
    "case_insensitive",
    "min_entropy",
    "stopwords",
    "batch",
];

/// Values of one rule mapping, by key; `None` for absent keys and for keys
/// whose value is Python `None`.
#[derive(Default)]
struct RawRule<'py> {
    values: [Option<Bound<'py, PyAny>>; RULE_KEYS.len()],
}

impl<'py> RawRule<'py> {
    fn get(&self, key: &str) -> Option<&Bound<'py, PyAny>> {
        RULE_KEYS
            .iter()
            .position(|k| *k == key)
            .and_then(|i| self.values[i].as_ref())
    }
}

fn describe_type(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "<unknown type>".to_owned(), |n| n.to_string())
}

fn required_str(raw: &RawRule<'_>, rule_id: &str, key: &str) -> Result<String, CoreError> {
    let value = raw
        .get(key)
        .ok_or_else(|| CoreError::invalid_rule(rule_id, key, "missing required field"))?;
    value.extract::<String>().map_err(|_| {
        CoreError::invalid_rule(
            rule_id,
            key,
            format!("expected str, got {}", describe_type(value)),
        )
    })
}

/// Turn one `Mapping[str, Any]` into a [`RuleSpec`]. `position` is used as
/// the rule's name in errors raised before its id is known.
fn parse_rule(position: usize, item: &Bound<'_, PyAny>) -> PyResult<Result<RuleSpec, CoreError>> {
    let placeholder = format!("<rule #{position}>");
    let Ok(mapping) = item.cast::<PyMapping>() else {
        return Ok(Err(CoreError::invalid_rule(
            placeholder,
            "<rule>",
            format!("expected a mapping, got {}", describe_type(item)),
        )));
    };

    let mut raw = RawRule::default();
    let mut unknown: Option<String> = None;
    for pair in mapping.items()?.iter() {
        let (key, value) = pair.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()?;
        let Ok(key) = key.extract::<String>() else {
            return Ok(Err(CoreError::invalid_rule(
                placeholder,
                "<key>",
                format!("keys must be str, got {}", describe_type(&key)),
            )));
        };
        match RULE_KEYS.iter().position(|k| *k == key) {
            Some(slot) => {
                if !value.is_none() {
                    raw.values[slot] = Some(value);
                }
            }
            None => {
                unknown.get_or_insert(key);
            }
        }
    }

    let id = match required_str(&raw, &placeholder, "id") {
        Ok(id) => id,
        Err(e) => return Ok(Err(e)),
    };
    Ok(build_spec(&raw, id, unknown))
}

fn build_spec(
    raw: &RawRule<'_>,
    id: String,
    unknown: Option<String>,
) -> Result<RuleSpec, CoreError> {
    if let Some(key) = unknown {
        return Err(CoreError::invalid_rule(
            &id,
            key,
            format!("unknown field (expected one of: {})", RULE_KEYS.join(", ")),
        ));
    }
    let category = required_str(raw, &id, "category")?;
    let severity: Severity = required_str(raw, &id, "severity")?
        .parse()
        .map_err(|e: crate::rule::UnknownName| e.into_rule_error(&id))?;
    let pattern = required_str(raw, &id, "pattern")?;

    let keywords = match raw.get("keywords") {
        None => Vec::new(),
        Some(value) => value.extract::<Vec<String>>().map_err(|_| {
            CoreError::invalid_rule(
                &id,
                "keywords",
                format!("expected a list of str, got {}", describe_type(value)),
            )
        })?,
    };
    let validator = match raw.get("validator") {
        None => None,
        Some(value) => {
            let name = value.extract::<String>().map_err(|_| {
                CoreError::invalid_rule(
                    &id,
                    "validator",
                    format!("expected str or None, got {}", describe_type(value)),
                )
            })?;
            Some(
                name.parse::<Validator>()
                    .map_err(|e| e.into_rule_error(&id))?,
            )
        }
    };
    let case_insensitive = match raw.get("case_insensitive") {
        None => false,
        Some(value) => value.extract::<bool>().map_err(|_| {
            CoreError::invalid_rule(
                &id,
                "case_insensitive",
                format!("expected bool, got {}", describe_type(value)),
            )
        })?,
    };

    let min_entropy = match raw.get("min_entropy") {
        None => None,
        Some(value) => {
            let bits = if value.is_instance_of::<pyo3::types::PyBool>() {
                None
            } else {
                value.extract::<f64>().ok()
            };
            Some(bits.ok_or_else(|| {
                CoreError::invalid_rule(
                    &id,
                    "min_entropy",
                    format!("expected float, got {}", describe_type(value)),
                )
            })?)
        }
    };
    let stopwords = match raw.get("stopwords") {
        None => Vec::new(),
        Some(value) => value.extract::<Vec<String>>().map_err(|_| {
            CoreError::invalid_rule(
                &id,
                "stopwords",
                format!("expected a list of str, got {}", describe_type(value)),
            )
        })?,
    };

    let batch = match raw.get("batch") {
        None => None,
        Some(value) => Some(value.extract::<String>().map_err(|_| {
            CoreError::invalid_rule(
                &id,
                "batch",
                format!("expected str or None, got {}", describe_type(value)),
            )
        })?),
    };

    Ok(RuleSpec {
        id,
        category,
        severity,
        pattern,
        keywords,
        validator,
        case_insensitive,
        min_entropy,
        stopwords,
        batch,
    })
}

/// Compiled regex rules with a keyword prefilter (see `regex_trap`).
#[pyclass(frozen, name = "RegexTrap", module = "ext_proc._native_traps")]
pub(crate) struct PyRegexTrap {
    pub(crate) trap: RegexTrap,
    ids: Vec<Arc<str>>,
    categories: Vec<Arc<str>>,
}

impl PyRegexTrap {
    fn wrap(&self, findings: Vec<Finding>) -> Vec<PyFinding> {
        findings
            .into_iter()
            .map(|f| PyFinding {
                rule_id: Arc::clone(&self.ids[f.rule_index]),
                category: Arc::clone(&self.categories[f.rule_index]),
                severity: self
                    .trap
                    .rule(f.rule_index)
                    .map_or(Severity::Notice, |r| r.severity),
                start: f.start,
                end: f.end,
                view: String::from("raw"),
            })
            .collect()
    }
}

#[pymethods]
impl PyRegexTrap {
    #[new]
    #[pyo3(signature = (rules, *, simd = true, tune = true))]
    fn new(py: Python<'_>, rules: Vec<Bound<'_, PyAny>>, simd: bool, tune: bool) -> PyResult<Self> {
        let mut specs = Vec::with_capacity(rules.len());
        for (position, item) in rules.into_iter().enumerate() {
            specs.push(parse_rule(position, &item)?.map_err(|e| to_py_err(py, &e))?);
        }
        // Compiling many regexes can take a while; other threads may run.
        let trap = detached(py, "RegexTrap()", || {
            RegexTrap::compile_with(specs, CompileOptions { simd, tune })
        })?
        .map_err(|e| to_py_err(py, &e))?;
        let ids = trap.rules().map(|r| Arc::from(r.id.as_str())).collect();
        let categories = trap
            .rules()
            .map(|r| Arc::from(r.category.as_str()))
            .collect();
        Ok(Self {
            trap,
            ids,
            categories,
        })
    }

    /// Scan `data` with the GIL released; findings sorted by (start, end, rule order).
    fn scan(&self, py: Python<'_>, data: &[u8]) -> PyResult<Vec<PyFinding>> {
        let findings = detached(py, "RegexTrap.scan", || self.trap.scan(data))?;
        Ok(self.wrap(findings))
    }

    /// Stage-1 keyword search in use: "avx512-teddy", "shift-or", "aho-corasick" or "none".
    #[getter]
    fn prefilter(&self) -> &'static str {
        self.trap.prefilter_name()
    }

    /// Rebuilds the AVX-512 filter made from the traffic it scanned (0 to `FILTER_TUNING_ROUNDS`).
    #[getter]
    fn filter_rebuilds(&self) -> usize {
        self.trap.filter_rebuilds()
    }

    /// Rule ids in rule order.
    #[getter]
    fn rule_ids(&self) -> Vec<&str> {
        self.ids.iter().map(AsRef::as_ref).collect()
    }

    fn __len__(&self) -> usize {
        self.trap.len()
    }

    fn __repr__(&self) -> String {
        format!("RegexTrap(<{} rules>)", self.trap.len())
    }
}

/// One high-entropy token, as byte offsets into the scanned `bytes`.
#[pyclass(frozen, name = "EntropyFinding", module = "ext_proc._native_traps")]
struct PyEntropyFinding {
    start: usize,
    end: usize,
    bits_per_char: f64,
    charset: Charset,
}

impl From<EntropyFinding> for PyEntropyFinding {
    fn from(f: EntropyFinding) -> Self {
        Self {
            start: f.start,
            end: f.end,
            bits_per_char: f.bits_per_char,
            charset: f.charset,
        }
    }
}

#[pymethods]
impl PyEntropyFinding {
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
        self.charset.as_str()
    }

    fn __repr__(&self) -> String {
        format!(
            "EntropyFinding(start={}, end={}, bits_per_char={:?}, charset='{}')",
            self.start,
            self.end,
            self.bits_per_char,
            self.charset.as_str()
        )
    }
}

/// Shannon-entropy detector for random-looking tokens (calibrated: docs/entropy-calibration.md).
#[pyclass(frozen, name = "EntropyTrap", module = "ext_proc._native_traps")]
pub(crate) struct PyEntropyTrap {
    pub(crate) trap: EntropyTrap,
}

#[pymethods]
impl PyEntropyTrap {
    // Keep these literals equal to `EntropyTrap::default()`; the Python stub
    // and `__text_signature__` show them.
    #[new]
    #[pyo3(signature = (min_length=20, hex_threshold=3.6, base64_threshold=4.9, alnum_threshold=4.9))]
    fn new(
        py: Python<'_>,
        min_length: i64,
        hex_threshold: f64,
        base64_threshold: f64,
        alnum_threshold: f64,
    ) -> PyResult<Self> {
        let min_length = usize::try_from(min_length).map_err(|_| {
            to_py_err(
                py,
                &CoreError::invalid_parameter("min_length", format!("{min_length} is negative")),
            )
        })?;
        let thresholds = EntropyThresholds {
            hex: hex_threshold,
            base64: base64_threshold,
            alnum: alnum_threshold,
        };
        EntropyTrap::new(min_length, thresholds)
            .map(|trap| Self { trap })
            .map_err(|e| to_py_err(py, &e))
    }

    /// Scan `data` with the GIL released; findings in input order.
    fn scan(&self, py: Python<'_>, data: &[u8]) -> PyResult<Vec<PyEntropyFinding>> {
        let findings = detached(py, "EntropyTrap.scan", || self.trap.scan(data))?;
        Ok(findings.into_iter().map(PyEntropyFinding::from).collect())
    }

    #[getter]
    fn min_length(&self) -> usize {
        self.trap.min_length()
    }

    #[getter]
    fn hex_threshold(&self) -> f64 {
        self.trap.thresholds().hex
    }

    #[getter]
    fn base64_threshold(&self) -> f64 {
        self.trap.thresholds().base64
    }

    #[getter]
    fn alnum_threshold(&self) -> f64 {
        self.trap.thresholds().alnum
    }

    fn __repr__(&self) -> String {
        let t = self.trap.thresholds();
        format!(
            "EntropyTrap(min_length={}, hex_threshold={:?}, base64_threshold={:?}, alnum_threshold={:?})",
            self.trap.min_length(),
            t.hex,
            t.base64,
            t.alnum
        )
    }
}

/// Run a regex trap and, if given, an entropy trap over `data` in one release of the GIL.
///
/// One native call per body instead of two: each release and re-acquisition of the GIL can
/// hand it to another thread (grpc's poller) and cost a context switch.
#[pyfunction]
fn scan_all(
    py: Python<'_>,
    regex: &Bound<'_, PyRegexTrap>,
    entropy: Option<&Bound<'_, PyEntropyTrap>>,
    data: &[u8],
) -> PyResult<(Vec<PyFinding>, Vec<PyEntropyFinding>)> {
    let regex = regex.get();
    let entropy = entropy.map(Bound::get);
    let (found, high) = detached(py, "scan_all", || {
        let found = regex.trap.scan(data);
        let high = entropy.map(|e| e.trap.scan(data)).unwrap_or_default();
        (found, high)
    })?;
    Ok((
        regex.wrap(found),
        high.into_iter().map(PyEntropyFinding::from).collect(),
    ))
}

/// Whether every string `pattern` matches holds one of `keywords` (see
/// `keyword_coverage.rs`), leaving out strings with a byte of `left_out`:
/// `("covered", None)`, `("gap", example)` with a short body that
/// matches without a keyword, or `("unknown", None)` when the search could
/// not tell.
#[pyfunction]
#[pyo3(signature = (rule_id, pattern, keywords, *, case_insensitive = false, left_out = None, skip_lookalikes = true))]
#[allow(clippy::needless_pass_by_value)] // PyO3 extracts a list into an owned Vec
fn keyword_coverage(
    py: Python<'_>,
    rule_id: &str,
    pattern: &str,
    keywords: Vec<String>,
    case_insensitive: bool,
    left_out: Option<&[u8]>,
    skip_lookalikes: bool,
) -> PyResult<(&'static str, Option<Vec<u8>>)> {
    use crate::keyword_coverage::{check, Coverage};
    let left_out = left_out.unwrap_or_default();
    let result = detached(py, "keyword_coverage", || {
        check(
            rule_id,
            pattern,
            case_insensitive,
            &keywords,
            left_out,
            skip_lookalikes,
        )
    })?;
    match result {
        Ok(Coverage::Covered) => Ok(("covered", None)),
        Ok(Coverage::Gap(example)) => Ok(("gap", Some(example))),
        Ok(Coverage::Unknown) => Ok(("unknown", None)),
        Err(e) => Err(to_py_err(py, &e)),
    }
}

/// Panic inside the native module, to test that a bug surfaces as
/// `InternalError` (not part of the API).
#[pyfunction]
fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    detached(py, "_panic_for_tests", || {
        panic!("deliberate panic for the tests");
    })
}

/// Native secret/PII traps for the Godel Guardrail `ext_proc` server.
#[pymodule(gil_used = false)]
fn _native_traps(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // `setattr`, not `add`: `add` would also list it in `__all__`.
    m.setattr("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FILTER_TUNING_ROUNDS", crate::filter_tuning::ROUNDS)?;
    m.add("TrapError", py.get_type::<TrapError>())?;
    m.add("RuleError", py.get_type::<RuleError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("ParameterError", parameter_error_type(py)?)?;
    m.add_class::<PyFinding>()?;
    m.add_class::<PyRegexTrap>()?;
    m.add_class::<PyEntropyFinding>()?;
    m.add_class::<PyEntropyTrap>()?;
    m.add_function(wrap_pyfunction!(scan_all, m)?)?;
    m.add_function(wrap_pyfunction!(keyword_coverage, m)?)?;
    // `setattr`: a test hook, kept out of `__all__`.
    m.setattr("_panic_for_tests", wrap_pyfunction!(_panic_for_tests, m)?)?;
    crate::py_normalize::register(m)?;
    Ok(())
}
