//! Parse errors: the line they are on and what is wrong with it.

use std::fmt;

/// A parse error; `line` is the 1-based line number of the offending line (None for "no frames").
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    pub(super) fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line: Some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {}: {}", line, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The same error, located in the file (or in-memory document) called `path`.
    pub fn in_file(self, path: &str) -> DataFormatError {
        DataFormatError {
            path: path.to_string(),
            line: self.line,
            reason: self.message,
        }
    }
}

/// A take's file is malformed or unreadable (Python: `koemorph_data.errors.DataFormatError`).
/// `path` names the file (or the name given to an in-memory document), `line` is the 1-based
/// JSONL line when the fault is on one line, `reason` says what is wrong, without the location.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFormatError {
    pub path: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl DataFormatError {
    /// A fault of the whole file, not of one line.
    pub fn whole_file(path: &str, reason: impl Into<String>) -> Self {
        DataFormatError {
            path: path.to_string(),
            line: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for DataFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

impl std::error::Error for DataFormatError {}
