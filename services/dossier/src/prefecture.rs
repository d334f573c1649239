//! Which prefecture is in charge: the département of the person's residence,
//! read from a French postal code.

/// Whether `code` names a département: "01" to "95" (Corsica being "2A" and
/// "2B"), or an overseas one ("971" to "974", "976").
pub fn is_department_code(code: &str) -> bool {
    match code {
        "2A" | "2B" | "971" | "972" | "973" | "974" | "976" => true,
        _ => {
            code.len() == 2
                && code.bytes().all(|b| b.is_ascii_digit())
                && code != "00"
                && code != "20"
                && code < "96"
        }
    }
}

/// The département code for a five-digit French postal code ("59000" -> "59",
/// "20090" -> "2A", "97400" -> "974"), or `None` when it is not one.
pub fn department_of_postal_code(postal_code: &str) -> Option<String> {
    if postal_code.len() != 5 || !postal_code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let two = &postal_code[..2];
    let code = match two {
        "00" => return None,
        // Corsica: 200xx-201xx is Corse-du-Sud, 202xx-206xx Haute-Corse.
        "20" => {
            if postal_code < "20200" {
                "2A".to_string()
            } else {
                "2B".to_string()
            }
        }
        // Overseas départements have three-digit codes.
        "97" => {
            let three = &postal_code[..3];
            match three {
                "971" | "972" | "973" | "974" | "976" => three.to_string(),
                _ => return None,
            }
        }
        "98" | "99" => return None,
        _ => two.to_string(),
    };
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departments() {
        let table = [
            ("59000", Some("59")),
            ("75011", Some("75")),
            ("01000", Some("01")),
            ("20000", Some("2A")),
            ("20167", Some("2A")),
            ("20200", Some("2B")),
            ("20600", Some("2B")),
            ("97400", Some("974")),
            ("97600", Some("976")),
            ("97500", None),
            ("98000", None),
            ("00100", None),
            ("5900", None),
            ("59 000", None),
            ("ABCDE", None),
        ];
        for (input, expected) in table {
            assert_eq!(
                department_of_postal_code(input).as_deref(),
                expected,
                "{input}"
            );
        }
    }
}
