//! The closed lists a filing chooses from. Each code has one stable lowercase
//! name used in JSON, logs and metrics; the proto enums mirror them.

/// A stored or received code that is not in its list: read back from a
/// database this service wrote, it means the data is damaged, never a value
/// to guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {list}")]
pub struct UnknownCode {
    pub list: &'static str,
    pub value: String,
}

/// Declares a closed list of codes with its stable names.
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == s)
            }

            /// The accepted names, for error messages.
            pub fn expected() -> String {
                Self::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::codes::from_stored!($name);
    };
}

/// For the other modules' code lists.
pub(crate) use codes;

/// `TryFrom<String>` through the list's `parse`: how a stored code is read
/// back, for `codes!` and for the lists written by hand.
macro_rules! from_stored {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = $crate::codes::UnknownCode;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value).ok_or($crate::codes::UnknownCode {
                    list: stringify!($name),
                    value,
                })
            }
        }
    };
}

pub(crate) use from_stored;

codes!(
    /// What the person asks for.
    Procedure {
        FirstApplication => "first_application",
        Renewal => "renewal",
        ChangeOfStatus => "change_of_status",
        Regularisation => "regularisation",
        Duplicate => "duplicate",
    }
);

codes!(
    /// Why the person is in France (the "motif" of the title).
    Motif {
        Student => "student",
        Employee => "employee",
        SelfEmployed => "self_employed",
        Talent => "talent",
        SeasonalWorker => "seasonal_worker",
        Family => "family",
        SpouseOfFrench => "spouse_of_french",
        ParentOfFrenchChild => "parent_of_french_child",
        PrivateAndFamilyLife => "private_and_family_life",
        InternationalProtection => "international_protection",
        Health => "health",
        Visitor => "visitor",
        Retired => "retired",
        EuCitizenFamily => "eu_citizen_family",
        Other => "other",
    }
);

codes!(
    /// The kind of the title the person holds today.
    TitleKind {
        LongStayVisa => "long_stay_visa",
        TemporaryCard => "temporary_card",
        MultiYearCard => "multi_year_card",
        ResidentCard => "resident_card",
        AgreementTitle => "agreement_title",
        ProvisionalAuthorisation => "provisional_authorisation",
        Receipt => "receipt",
    }
);

codes!(
    /// What a document is, as declared by the person or the channel.
    DocumentKind {
        Passport => "passport",
        Photo => "photo",
        ProofOfAddress => "proof_of_address",
        CurrentTitle => "current_title",
        BirthCertificate => "birth_certificate",
        ProofOfResources => "proof_of_resources",
        EnrolmentCertificate => "enrolment_certificate",
        EmploymentContract => "employment_contract",
        MarriageCertificate => "marriage_certificate",
        ProtectionDecision => "protection_decision",
        MedicalCertificate => "medical_certificate",
        TaxNotice => "tax_notice",
        TaxStamp => "tax_stamp",
        Other => "other",
    }
);

codes!(
    /// Where the person wants answers: a paper filer gets paper.
    AnswerChannel {
        OnlineAccount => "online_account",
        Email => "email",
        Sms => "sms",
        Post => "post",
    }
);

codes!(
    /// The language the person is written to in (letters, e-mails, SMS).
    Language {
        Fr => "fr",
        En => "en",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_is_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for &c in all {
                assert!(seen.insert(as_str(c)), "duplicate code {}", as_str(c));
                assert_eq!(parse(as_str(c)), Some(c));
            }
            assert_eq!(parse("nonsense"), None);
        }
        check(Procedure::ALL, Procedure::as_str, Procedure::parse);
        check(Motif::ALL, Motif::as_str, Motif::parse);
        check(TitleKind::ALL, TitleKind::as_str, TitleKind::parse);
        check(DocumentKind::ALL, DocumentKind::as_str, DocumentKind::parse);
        check(
            AnswerChannel::ALL,
            AnswerChannel::as_str,
            AnswerChannel::parse,
        );
        check(Language::ALL, Language::as_str, Language::parse);
        use crate::{desk, postal, signalement};
        check(
            desk::AppointmentState::ALL,
            desk::AppointmentState::as_str,
            desk::AppointmentState::parse,
        );
        check(
            desk::BookingRoute::ALL,
            desk::BookingRoute::as_str,
            desk::BookingRoute::parse,
        );
        check(
            signalement::AlternativeKind::ALL,
            signalement::AlternativeKind::as_str,
            signalement::AlternativeKind::parse,
        );
        check(
            signalement::ReportOutcome::ALL,
            signalement::ReportOutcome::as_str,
            signalement::ReportOutcome::parse,
        );
        check(
            postal::BatchState::ALL,
            postal::BatchState::as_str,
            postal::BatchState::parse,
        );
        check(
            postal::PageRole::ALL,
            postal::PageRole::as_str,
            postal::PageRole::parse,
        );
    }

    #[test]
    fn a_stored_code_not_in_its_list_is_refused_by_name() {
        use crate::postal::EnvelopeState;
        use crate::signalement::{Category, ReportState};
        assert_eq!(
            EnvelopeState::try_from("filed".to_string()),
            Ok(EnvelopeState::Filed)
        );
        let refused = ReportState::try_from("opened".to_string()).unwrap_err();
        assert_eq!(refused.to_string(), "\"opened\" is not a known ReportState");
        assert!(Category::try_from(String::new()).is_err());
    }

    #[test]
    fn serde_uses_the_codes() {
        let json = serde_json::to_string(&Motif::InternationalProtection).unwrap();
        assert_eq!(json, "\"international_protection\"");
        let back: Motif = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Motif::InternationalProtection);
    }
}
