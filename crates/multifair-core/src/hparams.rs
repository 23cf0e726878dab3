//! Typed hyperparameters, declared once per method: one line per key with its default and the
//! range a tuner draws it from (DomainBed's `hparams_registry`). The [`hparams!`] macro turns the
//! lines into a serde struct (unknown keys refused, every key defaulted), its `Default`, and the
//! list of [`Hparam`]s that `train --help` prints and the tuner reads.

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Where a tuner draws a hyperparameter from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Uniform on [lo, hi].
    Uniform(f64, f64),
    /// 10^u with u uniform on [log10 lo, log10 hi].
    LogUniform(f64, f64),
    /// Whole numbers lo..=hi.
    Int(i64, i64),
    /// One of these values, written as `--set` reads them.
    Choice(&'static [&'static str]),
    /// Not tuned.
    Fixed,
}

impl Range {
    /// The range as help text shows it.
    pub fn describe(&self) -> String {
        match self {
            Range::Uniform(lo, hi) => format!("uniform [{lo}, {hi}]"),
            Range::LogUniform(lo, hi) => format!("log-uniform [{lo}, {hi}]"),
            Range::Int(lo, hi) => format!("integer [{lo}, {hi}]"),
            Range::Choice(values) => format!("one of {}", values.join(", ")),
            Range::Fixed => "not tuned".into(),
        }
    }
}

impl Serialize for Range {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.describe().serialize(s)
    }
}

/// The values a hyperparameter may take (beyond its type), checked when a method is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Valid {
    /// Finite and >= 0.
    NonNegative,
    /// Finite and > 0.
    Positive,
    /// In [lo, hi].
    Closed(f64, f64),
    /// In [0, 1).
    Fraction,
}

impl Valid {
    /// `value` of `key` against the bound; the error names both.
    pub fn check(&self, key: &str, value: f64) -> Result<(), String> {
        let (ok, want) = match *self {
            Valid::NonNegative => (
                value.is_finite() && value >= 0.0,
                "a finite number >= 0".into(),
            ),
            Valid::Positive => (
                value.is_finite() && value > 0.0,
                "a finite number > 0".into(),
            ),
            Valid::Closed(lo, hi) => ((lo..=hi).contains(&value), format!("in [{lo}, {hi}]")),
            Valid::Fraction => ((0.0..1.0).contains(&value), "in [0, 1)".to_string()),
        };
        match ok {
            true => Ok(()),
            false => Err(format!("{key}: must be {want}, not {value}")),
        }
    }
}

/// One declared hyperparameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hparam {
    /// The `--set` key (prefixed with the method's name).
    pub key: &'static str,
    pub range: Range,
    pub doc: &'static str,
}

/// A method's hyperparameter struct as declared by [`hparams!`].
pub trait Hparams: Serialize + DeserializeOwned + Default {
    const HPARAMS: &'static [Hparam];

    /// The defaults as JSON, one entry per key.
    fn defaults() -> Value {
        serde_json::to_value(Self::default()).expect("hyperparameters serialise")
    }

    /// The declared bounds ([`Valid`]) on the values.
    fn check(&self) -> Result<(), String>;

    /// Reads resolved values (as [`Hparams::defaults`] writes them) and checks their bounds.
    fn from_value(value: &Value) -> Result<Self, String> {
        let h: Self = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            match e.path().to_string() {
                path if path == "." => e.inner().to_string(),
                path => format!("{path}: {}", e.inner()),
            }
        })?;
        h.check()?;
        Ok(h)
    }
}

/// Declares a hyperparameter struct: `field as "key": Type = default, range[, valid];` per
/// line, each with a doc comment; `valid` ([`Valid`]) bounds a numeric value.
#[macro_export]
macro_rules! hparams {
    ($(#[$meta:meta])* pub struct $name:ident {
        $( $(#[doc = $doc:literal])+ $field:ident as $key:literal : $ty:ty = $default:expr, $range:expr $(, $valid:expr)?; )*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])+ #[serde(rename = $key)] pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::hparams::Hparams for $name {
            fn check(&self) -> Result<(), String> {
                $( $( $crate::hparams::Valid::check(&$valid, $key, self.$field as f64)?; )? )*
                Ok(())
            }

            const HPARAMS: &'static [$crate::hparams::Hparam] = &[
                $( $crate::hparams::Hparam {
                    key: $key,
                    range: $range,
                    doc: concat!($($doc),+),
                }, )*
            ];
        }
    };
}

hparams! {
    /// A method without hyperparameters.
    pub struct NoHparams {}
}

#[cfg(test)]
mod tests {
    use super::*;

    hparams! {
        /// Two keys, for the tests.
        pub struct Example {
            /// A rate.
            rate as "ex_rate": f64 = 0.5, Range::Uniform(0.0, 1.0), Valid::Closed(0.0, 1.0);
            /// A switch.
            on as "ex_on": bool = true, Range::Choice(&["true", "false"]);
        }
    }

    #[test]
    fn defaults_are_declared_once_and_misspelt_keys_are_refused_with_the_valid_ones() {
        assert_eq!(
            Example::defaults(),
            serde_json::json!({"ex_rate": 0.5, "ex_on": true})
        );
        let e = Example::from_value(&serde_json::json!({"ex_ratee": 1})).unwrap_err();
        assert!(
            e.contains("unknown field `ex_ratee`, expected `ex_rate` or `ex_on`"),
            "{e}"
        );
        let e = Example::from_value(&serde_json::json!({"ex_on": "yes"})).unwrap_err();
        assert!(e.starts_with("ex_on: invalid type"), "{e}");
        let e = Example::from_value(&serde_json::json!({"ex_rate": 1.5})).unwrap_err();
        assert_eq!(e, "ex_rate: must be in [0, 1], not 1.5");
        assert_eq!(
            Valid::Positive.check("k", 0.0).unwrap_err(),
            "k: must be a finite number > 0, not 0"
        );
        assert!(
            Valid::NonNegative.check("k", f64::NAN).is_err()
                && Valid::Fraction.check("k", 1.0).is_err()
        );
        assert_eq!(Example::HPARAMS[1].key, "ex_on");
        assert_eq!(Example::HPARAMS[0].doc, " A rate.");
    }
}
