//! Usage errors: a command line that makes no sense (exit code 2).

/// A command line that makes no sense (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Argument parsers for quantities, with the fix in the message ("missing unit", "use a
/// decimal point").
pub mod arg {
    use thecal_host::error::quantity_words;
    use thecal_host::quantity::{self, QuantityError};
    use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

    fn hinted<T>(text: &str, parse: fn(&str) -> Result<T, QuantityError>) -> Result<T, String> {
        parse(text).map_err(|e| quantity_words(text, &e))
    }

    /// A dose, `50 µg`.
    pub fn dose(text: &str) -> Result<Nanograms, String> {
        hinted(text, quantity::parse_dose)
    }

    /// A volume, `0.2 mL`.
    pub fn volume(text: &str) -> Result<Nanolitres, String> {
        hinted(text, quantity::parse_volume)
    }

    /// A duration, `30 min`.
    pub fn duration(text: &str) -> Result<Minutes, String> {
        hinted(text, quantity::parse_duration)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn quantities_say_how_to_fix_them() {
            assert_eq!(
                super::dose("50").err().as_deref(),
                Some("missing unit: write \"50 µg\" (units: µg or mg)")
            );
            assert_eq!(
                super::volume("0,2 mL").err().as_deref(),
                Some("`0,2 mL`: use a decimal point, not a comma: \"0.2 mL\"")
            );
        }
    }
}
