//! The dossier reference a person writes down, reads over the phone or copies
//! from a letter: `W26-7K4Q-M9XZ-R`. Channel letter and year, eight random
//! Crockford base32 characters (no I, L, O, U to misread), and a check character
//! (Luhn mod 32) that catches any single wrong character and most swaps.

use rand::Rng;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

use crate::Channel;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Reference(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("a reference has the form W26-XXXX-XXXX-X")]
    Shape,
    #[error("the reference has a character that is not allowed: {0:?}")]
    Character(char),
    #[error("the check character does not match: the reference was mistyped")]
    Check,
}

fn value_of(c: char) -> Option<u32> {
    // Crockford decoding: O reads as 0, I and L as 1.
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .map(|p| p as u32)
}

/// Luhn mod N: the character that makes the weighted sum a multiple of 32.
fn check_value(values: &[u32]) -> u32 {
    let n = 32;
    let mut factor = 2;
    let mut sum = 0;
    for &v in values.iter().rev() {
        let addend = factor * v;
        sum += addend / n + addend % n;
        factor = if factor == 2 { 1 } else { 2 };
    }
    (n - sum % n) % n
}

impl Reference {
    /// A new random reference for a dossier filed on `channel` in `year`.
    pub fn generate(channel: Channel, year: i32, rng: &mut impl Rng) -> Self {
        let mut body = String::with_capacity(8);
        for _ in 0..8 {
            body.push(ALPHABET[rng.random_range(0..32)] as char);
        }
        Self::assemble(channel, year, &body)
    }

    fn assemble(channel: Channel, year: i32, body: &str) -> Self {
        let head = format!("{}{:02}", channel.reference_letter(), year.rem_euclid(100));
        let values: Vec<u32> = head
            .chars()
            .chain(body.chars())
            .filter_map(value_of)
            .collect();
        let check = ALPHABET[check_value(&values) as usize] as char;
        Self(format!("{head}-{}-{}-{check}", &body[..4], &body[4..]))
    }

    /// Reads a reference as a person may type it: any case, spaces or dashes
    /// anywhere, O for 0, I or L for 1.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let chars: Vec<char> = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if chars.len() != 12 {
            return Err(ReferenceError::Shape);
        }
        let letter = chars[0].to_ascii_uppercase();
        if Channel::from_reference_letter(letter).is_none() {
            return Err(ReferenceError::Shape);
        }
        let mut values = Vec::with_capacity(12);
        let mut canonical = String::with_capacity(12);
        for (i, &c) in chars.iter().enumerate() {
            let v = value_of(c).ok_or(ReferenceError::Character(c))?;
            if (i == 1 || i == 2) && v > 9 {
                return Err(ReferenceError::Shape);
            }
            values.push(v);
            canonical.push(ALPHABET[v as usize] as char);
        }
        let (payload, check) = values.split_at(11);
        if check_value(payload) != check[0] {
            return Err(ReferenceError::Check);
        }
        Ok(Self(format!(
            "{}-{}-{}-{}",
            &canonical[..3],
            &canonical[3..7],
            &canonical[7..11],
            &canonical[11..]
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn channel(&self) -> Channel {
        // Parsing and generation both guarantee a known first letter.
        self.0
            .chars()
            .next()
            .and_then(Channel::from_reference_letter)
            .unwrap_or(Channel::Web)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_references_parse_back() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for channel in Channel::ALL {
            for _ in 0..200 {
                let r = Reference::generate(channel, 2026, &mut rng);
                assert_eq!(r.as_str().len(), 15);
                assert!(
                    r.as_str()
                        .starts_with(&format!("{}26-", channel.reference_letter()))
                );
                assert_eq!(Reference::parse(r.as_str()), Ok(r.clone()));
                assert_eq!(r.channel(), channel);
            }
        }
    }

    #[test]
    fn lenient_typing_is_accepted() {
        let r = Reference::assemble(Channel::Postal, 2026, "01AB23CD");
        let typed = r
            .as_str()
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(Reference::parse(&typed), Ok(r));
    }

    #[test]
    fn every_single_character_error_is_caught() {
        let r = Reference::assemble(Channel::Web, 2026, "7K4QM9XZ");
        let chars: Vec<char> = r.as_str().chars().collect();
        for i in 0..chars.len() {
            if chars[i] == '-' {
                continue;
            }
            for &a in ALPHABET {
                let a = a as char;
                if a == chars[i] {
                    continue;
                }
                let mut typo = chars.clone();
                typo[i] = a;
                let typo: String = typo.into_iter().collect();
                assert!(Reference::parse(&typo).is_err(), "{typo} accepted");
            }
        }
    }

    #[test]
    fn malformed_references() {
        let table = [
            ("", ReferenceError::Shape),
            ("W26-7K4Q-M9XZ", ReferenceError::Shape),
            ("X26-7K4Q-M9XZ-0", ReferenceError::Shape),
            ("WAB-7K4Q-M9XZ-0", ReferenceError::Shape),
            ("W26-7K4Q-M9XU-0", ReferenceError::Character('U')),
        ];
        for (input, expected) in table {
            assert_eq!(Reference::parse(input), Err(expected), "{input}");
        }
    }
}
