//! Drugs the pump may be filled with, and the firmware's hard ceilings for each.
//!
//! The ceilings are enforced by the device whatever the programmer sends: a prescription
//! whose hard daily limit exceeds its drug's ceiling is refused. The values follow the
//! maximum intrathecal doses and concentrations recommended by the Polyanalgesic
//! Consensus Conference (2017) and the ziconotide labelling; a real product takes its
//! table from its own labelling and risk analysis. They are a firmware constant, not a
//! setting.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::units::{NanogramsPerDay, NanogramsPerMillilitre};

/// An intrathecal drug. Encoded as its variant index (see PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Drug {
    Morphine,
    Hydromorphone,
    Fentanyl,
    Sufentanil,
    Ziconotide,
    Baclofen,
    Bupivacaine,
    Clonidine,
}

/// Firmware hard limits for one drug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrugCeiling {
    /// Largest dose in any rolling 24 h, boluses included.
    pub max_per_day: NanogramsPerDay,
    /// Largest concentration the reservoir may be filled with.
    pub max_concentration: NanogramsPerMillilitre,
}

impl Drug {
    /// All drugs, in wire order.
    pub const ALL: [Drug; 8] = [
        Drug::Morphine,
        Drug::Hydromorphone,
        Drug::Fentanyl,
        Drug::Sufentanil,
        Drug::Ziconotide,
        Drug::Baclofen,
        Drug::Bupivacaine,
        Drug::Clonidine,
    ];

    /// Generic name.
    pub const fn name(self) -> &'static str {
        match self {
            Drug::Morphine => "morphine",
            Drug::Hydromorphone => "hydromorphone",
            Drug::Fentanyl => "fentanyl",
            Drug::Sufentanil => "sufentanil",
            Drug::Ziconotide => "ziconotide",
            Drug::Baclofen => "baclofen",
            Drug::Bupivacaine => "bupivacaine",
            Drug::Clonidine => "clonidine",
        }
    }

    /// Looks a drug up by its generic name (ASCII, case-insensitive).
    pub fn from_name(name: &str) -> Option<Drug> {
        Drug::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// The firmware's hard limits for this drug.
    pub const fn ceiling(self) -> DrugCeiling {
        let (per_day, conc) = match self {
            Drug::Morphine => (
                NanogramsPerDay::from_mg(15),
                NanogramsPerMillilitre::from_mg_per_ml(20),
            ),
            Drug::Hydromorphone => (
                NanogramsPerDay::from_mg(10),
                NanogramsPerMillilitre::from_mg_per_ml(15),
            ),
            Drug::Fentanyl => (
                NanogramsPerDay::from_ug(1_000),
                NanogramsPerMillilitre::from_mg_per_ml(10),
            ),
            Drug::Sufentanil => (
                NanogramsPerDay::from_ug(500),
                NanogramsPerMillilitre::from_mg_per_ml(5),
            ),
            Drug::Ziconotide => (
                NanogramsPerDay(19_200),
                NanogramsPerMillilitre::from_ug_per_ml(100),
            ),
            Drug::Baclofen => (
                NanogramsPerDay::from_ug(2_000),
                NanogramsPerMillilitre::from_ug_per_ml(2_000),
            ),
            Drug::Bupivacaine => (
                NanogramsPerDay::from_mg(20),
                NanogramsPerMillilitre::from_mg_per_ml(30),
            ),
            Drug::Clonidine => (
                NanogramsPerDay::from_ug(600),
                NanogramsPerMillilitre::from_ug_per_ml(1_000),
            ),
        };
        DrugCeiling {
            max_per_day: per_day,
            max_concentration: conc,
        }
    }
}

impl fmt::Display for Drug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
