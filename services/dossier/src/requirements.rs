//! Which documents make a file complete: a reviewed table, per procedure and
//! per motif. Completeness is recomputed from it whenever a document arrives,
//! from any channel.

use crate::codes::{DocumentKind, Motif, Procedure};

use DocumentKind as D;

/// Documents every procedure needs.
const ALWAYS: &[DocumentKind] = &[D::Passport, D::Photo, D::ProofOfAddress];

/// What each procedure adds.
pub const BY_PROCEDURE: &[(Procedure, &[DocumentKind])] = &[
    (Procedure::FirstApplication, &[D::BirthCertificate]),
    (Procedure::Renewal, &[D::CurrentTitle]),
    (Procedure::ChangeOfStatus, &[D::CurrentTitle]),
    (Procedure::Regularisation, &[D::BirthCertificate]),
    // A duplicate replaces a lost or stolen card: the declaration of loss is
    // filed as `other`, and a tax stamp is due.
    (Procedure::Duplicate, &[D::Other, D::TaxStamp]),
];

/// What each motif adds, except for a duplicate (the motif was proven when
/// the card was issued).
pub const BY_MOTIF: &[(Motif, &[DocumentKind])] = &[
    (
        Motif::Student,
        &[D::EnrolmentCertificate, D::ProofOfResources],
    ),
    (Motif::Employee, &[D::EmploymentContract]),
    (Motif::SelfEmployed, &[D::ProofOfResources]),
    (Motif::Talent, &[D::EmploymentContract]),
    (Motif::SeasonalWorker, &[D::EmploymentContract]),
    (Motif::Family, &[D::MarriageCertificate]),
    (Motif::SpouseOfFrench, &[D::MarriageCertificate]),
    (Motif::ParentOfFrenchChild, &[D::BirthCertificate]),
    (Motif::PrivateAndFamilyLife, &[D::TaxNotice]),
    (Motif::InternationalProtection, &[D::ProtectionDecision]),
    (Motif::Health, &[D::MedicalCertificate]),
    (Motif::Visitor, &[D::ProofOfResources]),
    (Motif::Retired, &[D::ProofOfResources]),
    (Motif::EuCitizenFamily, &[D::MarriageCertificate]),
    (Motif::Other, &[]),
];

/// Every document the file needs, without repeats, in table order.
pub fn required(procedure: Procedure, motif: Motif) -> Vec<DocumentKind> {
    let mut out: Vec<DocumentKind> = Vec::new();
    // International protection: the passport is often impossible to get from
    // the country fled; the protection decision stands in for it.
    let always = ALWAYS
        .iter()
        .filter(|d| !(motif == Motif::InternationalProtection && **d == D::Passport));
    let by_procedure = BY_PROCEDURE
        .iter()
        .filter(|(p, _)| *p == procedure)
        .flat_map(|(_, docs)| docs.iter());
    let by_motif = BY_MOTIF
        .iter()
        .filter(|(m, _)| *m == motif && procedure != Procedure::Duplicate)
        .flat_map(|(_, docs)| docs.iter());
    for d in always.chain(by_procedure).chain(by_motif) {
        if !out.contains(d) {
            out.push(*d);
        }
    }
    out
}

/// What is still missing, given the kinds of the documents received.
pub fn missing(procedure: Procedure, motif: Motif, received: &[DocumentKind]) -> Vec<DocumentKind> {
    required(procedure, motif)
        .into_iter()
        .filter(|d| !received.contains(d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_procedure_and_motif_is_in_the_table() {
        for p in Procedure::ALL {
            assert_eq!(
                BY_PROCEDURE.iter().filter(|(q, _)| q == p).count(),
                1,
                "{p}"
            );
        }
        for m in Motif::ALL {
            assert_eq!(BY_MOTIF.iter().filter(|(n, _)| n == m).count(), 1, "{m}");
        }
    }

    /// (procedure, motif, what it needs)
    #[test]
    fn required_documents_table() {
        let table: &[(Procedure, Motif, &[DocumentKind])] = &[
            (
                Procedure::Renewal,
                Motif::Employee,
                &[
                    D::Passport,
                    D::Photo,
                    D::ProofOfAddress,
                    D::CurrentTitle,
                    D::EmploymentContract,
                ],
            ),
            (
                Procedure::FirstApplication,
                Motif::Student,
                &[
                    D::Passport,
                    D::Photo,
                    D::ProofOfAddress,
                    D::BirthCertificate,
                    D::EnrolmentCertificate,
                    D::ProofOfResources,
                ],
            ),
            (
                Procedure::Renewal,
                Motif::InternationalProtection,
                &[
                    D::Photo,
                    D::ProofOfAddress,
                    D::CurrentTitle,
                    D::ProtectionDecision,
                ],
            ),
            (
                Procedure::Duplicate,
                Motif::Family,
                &[
                    D::Passport,
                    D::Photo,
                    D::ProofOfAddress,
                    D::Other,
                    D::TaxStamp,
                ],
            ),
            (
                Procedure::Regularisation,
                Motif::PrivateAndFamilyLife,
                &[
                    D::Passport,
                    D::Photo,
                    D::ProofOfAddress,
                    D::BirthCertificate,
                    D::TaxNotice,
                ],
            ),
            // No repeat when procedure and motif ask for the same document.
            (
                Procedure::FirstApplication,
                Motif::ParentOfFrenchChild,
                &[
                    D::Passport,
                    D::Photo,
                    D::ProofOfAddress,
                    D::BirthCertificate,
                ],
            ),
            (
                Procedure::ChangeOfStatus,
                Motif::Other,
                &[D::Passport, D::Photo, D::ProofOfAddress, D::CurrentTitle],
            ),
        ];
        for (p, m, expected) in table {
            assert_eq!(required(*p, *m), expected.to_vec(), "{p} {m}");
        }
    }

    #[test]
    fn missing_documents() {
        let got = [D::Passport, D::Photo, D::CurrentTitle];
        assert_eq!(
            missing(Procedure::Renewal, Motif::Employee, &got),
            vec![D::ProofOfAddress, D::EmploymentContract]
        );
        let all = required(Procedure::Renewal, Motif::Employee);
        assert!(missing(Procedure::Renewal, Motif::Employee, &all).is_empty());
    }
}
