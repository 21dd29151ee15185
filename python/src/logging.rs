//! par's `tracing` events as records of Python's `logging` (logger
//! `par_loader`): the spec's messages, with their fields as `extra`, so the
//! runtime's own logging setup (handlers, structlog, JSON) sees them as it
//! sees its own.

use std::collections::HashSet;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The logger every record goes to.
const LOGGER: &str = "par_loader";

/// Installs the route as the process's `tracing` subscriber, for par's own
/// events (debug and above). A process that set another subscriber first
/// keeps it, and par's events go there instead.
pub(crate) fn route_to_python(py: Python<'_>) -> PyResult<()> {
    let logging = py.import("logging")?;
    let logger = logging.call_method1("getLogger", (LOGGER,))?.unbind();
    // The attributes a LogRecord has of its own: a field with one of these
    // names would make `logging` refuse the record, so it gets a prefix.
    let record = logging.getattr("LogRecord")?.call1(("", 0, "", 0, "", (), py.None()))?;
    let own: Vec<String> = record.getattr("__dict__")?.cast::<PyDict>()?.keys().extract()?;
    let reserved: HashSet<String> = own
        .into_iter()
        .chain(["message", "asctime"].map(String::from))
        .collect();
    let route = PythonLogging { logger, reserved }.with_filter(Targets::new().with_target("par", Level::DEBUG));
    // Err only when a subscriber is already set: then that one keeps the events.
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(route));
    Ok(())
}

/// The layer that hands each event to the `par_loader` logger.
struct PythonLogging {
    logger: Py<PyAny>,
    reserved: HashSet<String>,
}

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            Level::DEBUG => 10,
            Level::TRACE => 5,
        };
        Python::attach(|py| {
            if let Err(error) = self.emit(py, level, event.metadata().target(), fields) {
                error.write_unraisable(py, None);
            }
        });
    }
}

impl PythonLogging {
    fn emit(&self, py: Python<'_>, level: u8, target: &str, fields: Fields) -> PyResult<()> {
        let logger = self.logger.bind(py);
        if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
            return Ok(());
        }
        let extra = PyDict::new(py);
        extra.set_item("par_target", target)?;
        for (name, value) in fields.values {
            let name = match self.reserved.contains(name) {
                true => format!("par_{name}"),
                false => name.to_owned(),
            };
            match value {
                Value::Text(text) => extra.set_item(name, text)?,
                Value::Signed(n) => extra.set_item(name, n)?,
                Value::Unsigned(n) => extra.set_item(name, n)?,
                Value::Float(n) => extra.set_item(name, n)?,
                Value::Bool(b) => extra.set_item(name, b)?,
            }
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("extra", extra)?;
        logger.call_method("log", (level, fields.message), Some(&kwargs))?;
        Ok(())
    }
}

/// One field's value, kept in the type `logging` handlers can format.
enum Value {
    Text(String),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Bool(bool),
}

/// An event's message and its other fields.
#[derive(Default)]
struct Fields {
    message: String,
    values: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Text(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Signed(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Unsigned(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Text(text)) => self.message = text,
            (name, value) => self.values.push((name, value)),
        }
    }
}
