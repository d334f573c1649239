//! The four intake channels. Their names are the same everywhere: proto,
//! routing keys, metric labels, logs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Ccc,
    Pan,
    Postal,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Web, Channel::Ccc, Channel::Pan, Channel::Postal];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Ccc => "ccc",
            Channel::Pan => "pan",
            Channel::Postal => "postal",
        }
    }

    /// The letter that opens a dossier reference, so references never collide across channels.
    pub fn reference_letter(self) -> char {
        match self {
            Channel::Web => 'W',
            Channel::Ccc => 'C',
            Channel::Pan => 'K',
            Channel::Postal => 'P',
        }
    }

    pub fn from_reference_letter(c: char) -> Option<Self> {
        Self::ALL.into_iter().find(|ch| ch.reference_letter() == c)
    }

    /// Routing key on `guichet.dossiers` for a dossier filed on this channel.
    pub fn submitted_routing_key(self) -> String {
        format!("dossier.submitted.{}", self.as_str())
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

crate::codes::from_stored!(Channel);

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_letters_and_routing_keys() {
        let table = [
            (Channel::Web, "web", 'W', "dossier.submitted.web"),
            (Channel::Ccc, "ccc", 'C', "dossier.submitted.ccc"),
            (Channel::Pan, "pan", 'K', "dossier.submitted.pan"),
            (Channel::Postal, "postal", 'P', "dossier.submitted.postal"),
        ];
        for (channel, name, letter, key) in table {
            assert_eq!(channel.as_str(), name);
            assert_eq!(Channel::parse(name), Some(channel));
            assert_eq!(channel.reference_letter(), letter);
            assert_eq!(Channel::from_reference_letter(letter), Some(channel));
            assert_eq!(channel.submitted_routing_key(), key);
        }
        assert_eq!(Channel::parse("fax"), None);
    }
}
