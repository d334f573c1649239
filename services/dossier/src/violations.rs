//! Field-level problems found while parsing input, reported all at once.

use serde::Serialize;

/// One thing wrong with one field, named by its path in the input (`applicant.birth_date`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolation {
    pub field: String,
    pub problem: String,
}

/// Every problem found in one input; empty means the input is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn one(field: impl Into<String>, problem: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, problem);
        v
    }

    pub fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            problem: problem.into(),
        });
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }

    /// `Ok(value)` when nothing was found wrong, the violations otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.problem))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for Violations {}

impl From<Vec<FieldViolation>> for Violations {
    fn from(v: Vec<FieldViolation>) -> Self {
        Self(v)
    }
}
