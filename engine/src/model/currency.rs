use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Converting deal amounts in currencies Partner Central does not take (it takes
/// only USD and EUR). Without this section a deal in another currency is not sent:
/// a creation waits for a currency AWS takes, and an update leaves the currency and
/// the amount as they are on the opportunity. With it, the expected spend is
/// converted at your rates and sent in `to`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrencyConversion {
    /// The currency converted amounts are sent in.
    pub to: AcceptedCurrency,
    /// Per deal currency (ISO 4217 code, `GBP`), what one unit of it is worth in
    /// `to` (`GBP: 1.27` when 1 GBP buys 1.27 USD). RevOps keep these rates current;
    /// a currency not listed here is not converted.
    pub rates: IndexMap<String, Rate>,
}

/// A currency Partner Central accepts for an expected spend (reference §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AcceptedCurrency {
    /// US dollars.
    #[serde(rename = "USD")]
    Usd,
    /// Euros.
    #[serde(rename = "EUR")]
    Eur,
}

impl AcceptedCurrency {
    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            AcceptedCurrency::Usd => "USD",
            AcceptedCurrency::Eur => "EUR",
        }
    }
}

/// An exchange rate: a positive number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Rate(#[schemars(range(min = 0.000001))] pub f64);
